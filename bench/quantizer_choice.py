"""Which residual quantizer: our factorized, L2-normalised RVQ with dead-code restart (codec/quantize.py,
after DAC) or vector-quantize-pytorch's ResidualVQ (EMA codebooks, k-means init, dead-code expiry)?

    python bench/quantizer_choice.py [--steps 400] [--corpus data/corpus]

Trains the same small codec (same data, seed, losses, schedule; no GAN) once with each quantizer, then
reports the trainer's validation mel loss at 1, 2, 4 and 8 codebooks and the per-codebook perplexity of
the last logging window. Lower mel loss at every bitrate, and a larger gain per added codebook, win.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import update_section  # noqa: E402
from codec.nn.model import CodecConfig  # noqa: E402
from codec.train.config import TrainConfig  # noqa: E402
from codec.train.loop import train  # noqa: E402

SMALL = CodecConfig(
    encoder_dim=96,
    encoder_layers=3,
    decoder_dim=128,
    decoder_layers=4,
    mlp_ratio=2,
    latent_dim=128,
    num_codebooks=8,
    codebook_size=1024,
    codebook_dim=8,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="training steps per quantizer")
    parser.add_argument("--corpus", default="data/corpus", help="corpus built by `make data`")
    parser.add_argument("--out", default="runs/quantizer-choice", help="where the two runs go")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = TrainConfig(
        data_dir=args.corpus,
        steps=args.steps,
        batch_size=8,
        warmup_steps=50,
        gan_start_step=10**9,
        log_every=50,
        ckpt_every=args.steps,
        eval_every=args.steps,
        dead_code_idle_steps=100,
    )
    rows = []
    for name in ("factorized", "vqpytorch"):
        out = Path(args.out) / name
        start = time.time()
        train(replace(SMALL, quantizer=name), replace(cfg, out_dir=str(out)))
        minutes = (time.time() - start) / 60
        last = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines() if x.strip()][-1]
        valid = [last[f"valid/mel_k{k}"] for k in (1, 2, 4, 8)]
        ppl = [round(v) for k, v in last.items() if k.startswith("codebook/perplexity_")]
        rows.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in valid) + f" | {ppl} | {minutes:.1f} |")
    body = "\n".join(
        [
            f"Small codec (8 x 1024 codebooks, 50 Hz), {args.steps} steps, batch 8 x 1 s, no GAN, same seed and data.",
            "Validation: the trainer's multi-resolution log-mel L1 on fixed 3 s validation segments.",
            "",
            "| quantizer | valid mel k=1 | k=2 | k=4 | k=8 | perplexity per codebook (of 1024) | minutes |",
            "|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    print(body)
    if not args.no_write:
        update_section("Quantizer choice", body)


if __name__ == "__main__":
    main()
