"""The trainer's validation figure for exported codecs, on the same segments for every stage.

    python bench/valid_mel.py codec/weights/default /tmp/stage7 [--corpus data/corpus]

The multi-resolution log-mel L1 of ``codec.train.evaluate`` at 1, K/4, K/2 and K codebooks, on the 16
fixed 3 s segments that stage 1 of the shipped default validated on (the corpus's valid split drawn with
the default kind weights, seed 0, step 0). A fine-tuning run that changes its kind weights validates on
other segments, so its own curve is not comparable with earlier stages'; this is. Prints only.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from codec.nn.model import AudiotokCodec  # noqa: E402
from codec.train.batches import validation_batch  # noqa: E402
from codec.train.config import TrainConfig  # noqa: E402
from codec.train.loop import evaluate  # noqa: E402
from codec.train.losses import MultiResolutionMelLoss  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("codecs", nargs="+", help="exported codec folders")
    parser.add_argument("--corpus", default="data/corpus")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    defaults = replace(TrainConfig(), data_dir=args.corpus)
    segments: dict[tuple[int, int], torch.Tensor] = {}  # one read of the valid split per frame layout
    for folder in args.codecs:
        model = AudiotokCodec.from_pretrained(folder).model.float()
        cfg = model.config
        layout = (cfg.sample_rate, cfg.hop_length)
        if layout not in segments:
            segments[layout] = validation_batch(cfg, defaults)
        with torch.no_grad():
            figures = evaluate(model, segments[layout], MultiResolutionMelLoss(cfg.sample_rate))
        print(folder, " ".join(f"{k.removeprefix('valid/')} {v:.3f}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
