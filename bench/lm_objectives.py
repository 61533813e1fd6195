"""Causal vs masked token prediction at equal size, data and compute (issue 27), in one run.

    python bench/lm_objectives.py --causal runs/lm-causal/export --masked runs/lm-masked/export
        [--stores data/tokens/test-speech,data/tokens/test-music,data/tokens/test-sfx] [--limit N] [--no-write]

The two exports are trained by ``make bench-objectives`` from ``configs/tokenlm/causal-parallel-small.yaml``
and ``configs/tokenlm/masked-small.yaml``: the same backbone, pattern (parallel), rows, steps and store;
only the objective differs. Each is scored on its own objective on the corpus test split (`eval.lm_eval`:
bits per second for the causal one, masked accuracy for the masked one), and both are probed layer by
layer on the paired set's tasks (`eval.probe`, log-mel in the same run): which objective gives the more
useful representation, task by task. Writes "Token LM: causal vs masked" in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import update_section  # noqa: E402
from eval.lm_eval import evaluate_lm, to_markdown  # noqa: E402
from eval.probe import MAX_TEST, MAX_TRAIN, run_probes, tasks  # noqa: E402
from eval.probe_features import Models  # noqa: E402
from tokenlm.cli import load_lm  # noqa: E402

STORES = ",".join(str(ROOT / "data" / "tokens" / f"test-{k}") for k in ("speech", "music", "sfx"))


def best_layers(report: dict) -> dict[str, dict[str, tuple[str, float]]]:
    """task -> probe -> (the best token-LM layer, its accuracy)."""
    out = {}
    for task, cells in report["results"].items():
        layers = [n for n in cells if n.startswith("lm-layer-")]
        out[task] = {
            p: max(((n, cells[n][p]) for n in layers), key=lambda x: x[1]) for p in ("linear", "mlp")
        }
    return out


def run_info(export: Path) -> str:
    run = (
        json.loads((export.parent / "run.json").read_text()) if (export.parent / "run.json").is_file() else {}
    )
    history = export.parent / "history.jsonl"
    minutes = None
    if history.is_file():
        rows = [json.loads(line) for line in history.read_text().splitlines() if line.strip()]
        minutes = max((r.get("time_s", 0) for r in rows), default=0) / 60
    steps = run.get("train", {}).get("steps")
    prec = run.get("precision")
    return f"{steps} steps, {minutes:.0f} min, {prec}" if minutes is not None else f"{steps} steps"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--causal", required=True, help="export of the causal run")
    parser.add_argument("--masked", required=True, help="export of the masked run")
    parser.add_argument("--stores", default=STORES, help="comma-separated held-out token stores")
    parser.add_argument("--items", type=int, default=40, help="items per store for the objective scores")
    parser.add_argument("--data", default=str(ROOT / "data" / "alm"), help="the paired set for the probes")
    parser.add_argument("--limit", type=int, default=None, help="at most N probe examples per task and split")
    parser.add_argument("--out", default=str(ROOT / "runs" / "objectives-bench"), help="reports and caches")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--no-write", action="store_true", help="print the section, leave BENCHMARKS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    out = Path(args.out)
    limit = args.limit or max(MAX_TRAIN, MAX_TEST)
    found = tasks(args.data, max_train=min(limit, MAX_TRAIN), max_test=min(limit, MAX_TEST))
    exports = {"causal": Path(args.causal), "masked": Path(args.masked)}
    own, probes = {}, {}
    for name, export in exports.items():
        own[name] = evaluate_lm(load_lm(str(export)), args.stores.split(","), args.items)
        features = ["logmel", "lm"] if name == "causal" else ["lm"]
        probes[name] = run_probes(
            args.data, features, found, out / name, Models(lm=str(export)), progress=print
        )
    best = {name: best_layers(r) for name, r in probes.items()}
    rows = ["| task | classes | chance | log-mel | causal, best layer | masked, best layer | masked - causal |",
            "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    wins = {p: 0 for p in ("linear", "mlp")}
    for task, cells in probes["causal"]["results"].items():
        t = probes["causal"]["tasks"][task]
        c, m = best["causal"][task], best["masked"][task]
        for p in wins:
            wins[p] += m[p][1] > c[p][1]
        logmel = cells["logmel"]
        rows.append(f"| {task} | {len(t['classes'])} | {100 * t['chance']:.1f} | {100 * logmel['linear']:.1f} / "
                    f"{100 * logmel['mlp']:.1f} | {100 * c['linear'][1]:.1f} / {100 * c['mlp'][1]:.1f} "
                    f"({c['linear'][0][9:]}) | {100 * m['linear'][1]:.1f} / {100 * m['mlp'][1]:.1f} "
                    f"({m['linear'][0][9:]}) | {100 * (m['linear'][1] - c['linear'][1]):+.1f} / "
                    f"{100 * (m['mlp'][1] - c['mlp'][1]):+.1f} |")  # fmt: skip
    n = len(probes["causal"]["results"])
    minutes = (time.perf_counter() - start) / 60
    body = "\n".join([
        f"Two token LMs of `configs/tokenlm/{{causal-parallel,masked}}-small.yaml` (4 layers of 256, parallel "
        f"pattern, 12 codebooks; the same store `data/tokens/train`, rows and schedule; only the objective "
        f"differs): causal {run_info(exports['causal'])}; masked {run_info(exports['masked'])}. "
        f"{minutes:.1f} min for this bench with {args.threads} thread(s).", "",
        "Each on its own objective, corpus test split:", "",
        to_markdown(own["causal"]), "", to_markdown(own["masked"]), "",
        "Probes of each LM's layers (mean and std over time of each isolated event; cells: linear / MLP test "
        "accuracy %, the best layer's index after the linear figure):", "", *rows, "",
        f"The masked LM's best layer beats the causal LM's on {wins['linear']} of {n} tasks with the linear probe "
        f"and {wins['mlp']} of {n} with the MLP probe (ties count as not beating).",
    ])  # fmt: skip
    print(body)
    (out / "objectives.json").write_text(json.dumps({"own": own, "probes": probes}, indent=1) + "\n")
    if not args.no_write:
        update_section("Token LM: causal vs masked", body)


if __name__ == "__main__":
    main()
