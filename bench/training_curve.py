"""The codec training curve from a run's history.jsonl, as a table in BENCHMARKS.md.

    python bench/training_curve.py [--run runs/codec-default] [--every 250]

Rows: step, wall-clock minutes, train mel/STFT loss, validation mel loss at 1, 3, 6 and 12 codebooks
(the trainer's multi-resolution log-mel L1 on fixed 3 s validation segments), and the mean codebook
perplexity.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.report import update_section  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/codec-default", help="training output folder")
    parser.add_argument("--title", default="Codec training curve", help="BENCHMARKS.md section title")
    parser.add_argument(
        "--note",
        default="(for the shipped stage-1 run the corpus grew at steps 700 and 900: codec/weights/default/RECIPE.md).",
        help="a line on the run's data",
    )
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    rows = [json.loads(x) for x in (Path(args.run) / "history.jsonl").read_text().splitlines() if x.strip()]
    rows = [r for r in rows if any(k.startswith("valid/") for k in r)]
    valid_keys = sorted(
        {k for r in rows for k in r if k.startswith("valid/")}, key=lambda k: int(k.split("_k")[1])
    )
    config = json.loads((Path(args.run) / "config.json").read_text())
    lines = [
        f"Run `{args.run}`: batch {config['train']['batch_size']} x {config['train']['segment_seconds']} s, "
        f"GAN from step {config['train']['gan_start_step']}, schedule {config['train']['steps']} steps.",
        "Validation: 16 fixed 3 s segments from the valid split of the corpus the run had loaded",
        args.note + " Minutes are cumulative wall time.",
        "",
        "| step | minutes | train mel | train stft | "
        + " | ".join(k.replace("valid/", "valid ") for k in valid_keys)
        + " | mean perplexity |",
        "|" + "---|" * (5 + len(valid_keys)),
    ]
    for r in rows:
        ppl = [v for k, v in r.items() if k.startswith("codebook/perplexity_")]
        lines.append(
            f"| {r['step']} | {r['time_s'] / 60:.0f} | {r['train/mel']:.3f} | {r['train/stft']:.3f} | "
            + " | ".join(f"{r[k]:.3f}" for k in valid_keys)
            + f" | {sum(ppl) / max(1, len(ppl)):.0f} |"
        )
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        update_section(args.title, body)


if __name__ == "__main__":
    main()
