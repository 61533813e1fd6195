"""Ship a trained token LM: the run's export (fp32) as fp16 safetensors with its config.

    python -m tokenlm.export runs/tokenlm-small/export --out tokenlm/weights/default

The folder keeps its ``RECIPE.md`` (written by hand: the commands, data and time that made the weights).
Loading casts the fp16 weights back to fp32 (`TokenLM.from_pretrained`), so the shipped model computes
in fp32 like the run did, with fp16-rounded weights.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from tokenlm.model import TokenLM


def export(run_export: str | Path, out: str | Path) -> Path:
    lm = TokenLM.from_pretrained(run_export)
    Path(out).mkdir(parents=True, exist_ok=True)
    lm.save_pretrained(out, dtype=torch.float16)
    return Path(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_export", help="the export folder of a tokenlm.train run (RUN/export)")
    parser.add_argument("--out", required=True, help="folder to write (e.g. tokenlm/weights/default)")
    args = parser.parse_args(argv)
    print(f"exported {export(args.run_export, args.out)}")


if __name__ == "__main__":
    main()
