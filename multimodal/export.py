"""Ship a trained audio-language model: fp16 safetensors, its vocabulary and the run's provenance.

    python -m multimodal.export runs/alm-small/export --out multimodal/weights/default [--config NAME]

The token LM it encodes audio with is referenced (``default``, with its sha256), not copied.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch


def export(src: str | Path, out: str | Path, config_name: str | None = None) -> Path:
    from multimodal.api import AudioLanguageModel

    src, out = Path(src), Path(out)
    alm = AudioLanguageModel.from_pretrained(src)
    run = src.parent / "run.json"
    if run.is_file():
        info = json.loads(run.read_text())
        alm.provenance.update({"train": info.get("train"), "precision": info.get("precision"),
                               "trainable_parameters": info.get("trainable_parameters")})  # fmt: skip
    if config_name:
        alm.provenance["config"] = config_name
    alm.save_pretrained(out, dtype=torch.float16)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m multimodal.export", description=__doc__.splitlines()[0])
    p.add_argument("src", help="a multimodal.train export folder")
    p.add_argument("--out", required=True)
    p.add_argument("--config", help="the configs/multimodal file the run used (recorded)")
    args = p.parse_args(argv)
    out = export(args.src, args.out, args.config)
    size = sum(f.stat().st_size for f in out.iterdir()) / 1e6
    print(f"exported {out} ({size:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
