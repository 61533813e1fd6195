"""Representation probes: linear and MLP probe accuracy of frozen features against log-mel, in one run.

    python bench/probes.py [--limit N] [--no-write] [--out runs/probe-bench] [--alm PATH]

Runs `eval.probe` (the tasks of the paired set ``data/alm``, every feature: log-mel, the codec's latents and
quantized latents, each token-LM layer, and the ALM's audio states when there is a model) and writes the
"Representation probes" section of BENCHMARKS.md: the table, the best feature per task, and on how many
tasks the best token-LM layer beats log-mel, all computed from the run's numbers. ``--limit`` caps the
examples per task and split (a smoke run); without it the caps are 1500 train and 400 test.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import update_section  # noqa: E402
from eval.probe import MAX_TEST, MAX_TRAIN, run_probes, tasks, to_markdown  # noqa: E402
from eval.probe_features import Models  # noqa: E402

PROBES = ("linear", "mlp")


def summary(report: dict) -> str:
    """Best feature per task and probe, and the token LM's best layer against log-mel, from the numbers."""
    lines = ["| task | best (linear) | best (MLP) | best LM layer (linear) | LM - log-mel (linear) |", "|---|---|---|---|---:|"]  # fmt: skip
    wins = dict.fromkeys(PROBES, 0)
    compared = 0
    for task, cells in report["results"].items():
        best = {p: max(cells, key=lambda n, p=p: cells[n][p]) for p in PROBES}
        layers = [n for n in cells if n.startswith("lm-layer-")]
        row = f"| {task} | {best['linear']} ({100 * cells[best['linear']]['linear']:.1f}) | {best['mlp']} ({100 * cells[best['mlp']]['mlp']:.1f}) |"  # fmt: skip
        if layers and "logmel" in cells:
            compared += 1
            for p in PROBES:
                wins[p] += max(cells[n][p] for n in layers) > cells["logmel"][p]
            lm = max(layers, key=lambda n: cells[n]["linear"])
            row += f" {lm} ({100 * cells[lm]['linear']:.1f}) | {100 * (cells[lm]['linear'] - cells['logmel']['linear']):+.1f} |"  # fmt: skip
        else:
            row += " - | - |"
        lines.append(row)
    text = "\n".join(lines)
    if compared:
        text += (
            f"\n\nThe best token-LM layer beats log-mel on {wins['linear']} of {compared} tasks with the linear "
            f"probe and on {wins['mlp']} of {compared} with the MLP probe (ties count as not beating)."
        )
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT / "data" / "alm"), help="the paired set folder")
    parser.add_argument("--limit", type=int, default=None, help="at most N examples per task and split")
    parser.add_argument("--features", default="logmel,codec-latents,codec-tokens,lm,alm", help="features")
    parser.add_argument("--alm", default=None, help="audio-language model folder (default: the shipped one)")
    parser.add_argument("--out", default=str(ROOT / "runs" / "probe-bench"), help="report and feature cache")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--no-write", action="store_true", help="print the section, leave BENCHMARKS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    limit = args.limit or max(MAX_TRAIN, MAX_TEST)
    start = time.perf_counter()
    found = tasks(args.data, max_train=min(limit, MAX_TRAIN), max_test=min(limit, MAX_TEST))
    report = run_probes(
        args.data, args.features.split(","), found, args.out, Models(alm=args.alm), progress=print
    )
    seconds = time.perf_counter() - start
    body = (
        f"Frozen features of isolated events of `{Path(args.data).name}` (train split -> test split), "
        f"{'at most ' + str(args.limit) + ' examples per task and split' if args.limit else 'at most 1500 train and 400 test examples per task'}; "
        f"features as mean and std over time; linear probe = logistic regression, MLP = one hidden layer of "
        f"256 early-stopped on train sources held out (eval/probe.py). {seconds / 60:.1f} min with "
        f"{args.threads} thread(s), feature cache included.\n\n"
        f"{to_markdown(report)}\n{summary(report)}\n"
    )  # fmt: skip
    print(body)
    if not args.no_write:
        update_section("Representation probes", body)


if __name__ == "__main__":
    main()
