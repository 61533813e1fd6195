"""Interleaving patterns at equal training compute: held-out bits per second of audio, in one run.

    python bench/tokenlm_patterns.py [--data data/tokens/train] [--steps 300] [--codebooks 4]

Each pattern trains the same model size on the same batch of rows of the same length for the same
compute: the same steps (the same positions through the same layers), fewer for a model whose step
costs more (a depth head: steps scaled by the FLOPs ratio of `TokenLM.flops_per_step`). Flatten and
coarse-first then read 1/K of the audio that delay and parallel read, which is their price. Each is then scored on
the same held-out items of the store (by id): bits per second of audio under its own distribution, the
figure LM compression would reach, against the raw ``K x log2(N) x frame_rate``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import update_section  # noqa: E402
from tokenlm.model import LMConfig  # noqa: E402
from tokenlm.train import TrainConfig, train  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", action="append", default=None, help="token store(s) (default: data/tokens/train)"
    )
    parser.add_argument("--patterns", default="flatten,coarse_first,delay,parallel,parallel+depth",
                        help="comma-separated; NAME+depth adds a 2-layer depth head of 128")  # fmt: skip
    parser.add_argument("--codebooks", type=int, default=4, help="the first K codebooks of the store")
    parser.add_argument("--steps", type=int, default=300, help="training steps per pattern")
    parser.add_argument("--hidden", type=int, default=192, help="model width")
    parser.add_argument("--layers", type=int, default=3, help="model depth")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--eval-items", type=int, default=64, help="held-out items scored")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    data = args.data or [str(ROOT / "data" / "tokens" / "train")]
    torch.set_num_threads(args.threads)
    train_cfg = TrainConfig(steps=args.steps, batch_size=8, seq_steps=256, lr=2e-3, warmup_steps=min(50, args.steps // 5),
                            eval_every=args.steps, eval_max_items=args.eval_items, log_every=args.steps,
                            ckpt_every=args.steps, mixed_precision="no", num_threads=args.threads)  # fmt: skip
    rows = ["| pattern | steps | held-out bits/s | raw bits/s | fewer bits | bits/code | train minutes |",
            "|---|---|---|---|---|---|---|"]  # fmt: skip
    reference = None
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.patterns.split(","):
            from accelerate.state import AcceleratorState

            from tokenlm.model import TokenLM

            AcceleratorState._reset_state(True)
            pattern, _, extra = spec.partition("+")
            model_cfg = LMConfig(pattern=pattern, num_codebooks=args.codebooks, hidden_size=args.hidden,
                                 num_layers=args.layers, num_heads=args.hidden // 64, num_kv_heads=args.hidden // 64,
                                 intermediate_size=int(args.hidden * 8 / 3) // 16 * 16, max_steps=512,
                                 depth_layers=2 if extra == "depth" else 0, depth_hidden=128)  # fmt: skip
            flops = TokenLM.build(model_cfg).flops_per_step(train_cfg.seq_steps // 2)
            reference = reference or flops
            steps = max(
                1, round(args.steps * reference / flops)
            )  # equal compute: fewer steps for a costlier step
            start = time.time()
            torch.manual_seed(0)
            run = replace(train_cfg, steps=steps, eval_every=steps, log_every=steps, ckpt_every=steps)
            train(model_cfg, run, data, Path(tmp) / spec, quiet=True)
            minutes = (time.time() - start) / 60
            last = [json.loads(x) for x in (Path(tmp) / spec / "history.jsonl").read_text().splitlines()][-1]
            saving = 1 - last["eval/bits_per_second"] / last["eval/raw_bits_per_second"]
            rows.append(f"| {spec} | {steps} | {last['eval/bits_per_second']:.0f} | {last['eval/raw_bits_per_second']:.0f} | "
                        f"{100 * saving:.1f}% | {last['eval/bits_per_code']:.3f} | {minutes:.1f} |")  # fmt: skip
            print(rows[-1], flush=True)
    body = "\n".join([
        f"{args.codebooks} codebooks of `{', '.join(data)}`; each pattern: {args.layers} layers of {args.hidden}, "
        f"{args.steps} steps of 8 rows x 256 positions or their compute, scored on the same {args.eval_items} "
        f"held-out items (by id).", "", *rows,
    ])  # fmt: skip
    print(body)
    if not args.no_write:
        update_section("Token LM patterns at equal compute", body)


if __name__ == "__main__":
    main()
