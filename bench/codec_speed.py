"""Codec speed: the audiotok default vs the EnCodec 24 kHz architecture, in one run.

    python bench/codec_speed.py [--codec default] [--seconds 60] [--threads 2] [--repeats 3]

EnCodec uses the `encodec` package with random weights (speed does not depend on weights) at 6 kbps.
Both codecs get the same noise-plus-chirp signal (resampled to each codec's rate outside the timed
region). Figures are medians over ``--repeats`` runs: seconds of audio per second of wall time
(x real time) for encode and decode, and the ratio of ours to EnCodec's.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.report import update_section  # noqa: E402
from codec.registry import load_codec  # noqa: E402
from codec.tokens import resample  # noqa: E402


def signal(seconds: float, sr: int) -> torch.Tensor:
    t = torch.arange(int(seconds * sr)) / sr
    g = torch.Generator().manual_seed(0)
    return 0.3 * torch.sin(2 * math.pi * (200 + 300 * t) * t) + 0.05 * torch.randn(len(t), generator=g)


def timed(fn, repeats: int) -> float:
    fn()  # warm-up (allocations, oneDNN kernel selection)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codec", default="default", help="our codec (name or folder)")
    parser.add_argument("--seconds", type=float, default=60.0, help="audio length per run")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median)")
    parser.add_argument("--no-write", action="store_true", help="print only; do not update BENCHMARKS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    ours = load_codec(args.codec)
    wav = signal(args.seconds, ours.sample_rate)[None, None]
    rows = []
    for k in (3, 6, 12):
        tokens = ours.encode(wav, ours.sample_rate, num_codebooks=k)
        enc = timed(lambda k=k: ours.encode(wav, ours.sample_rate, num_codebooks=k), args.repeats)
        dec = timed(lambda tokens=tokens: ours.decode(tokens), args.repeats)
        rows.append((f"audiotok default, {k} codebooks ({tokens.bits_per_second() / 1000:g} kbps)", enc, dec))

    from encodec import EncodecModel

    encodec = EncodecModel.encodec_model_24khz(pretrained=False).eval()
    encodec.set_target_bandwidth(6.0)
    wav24 = resample(wav[0], ours.sample_rate, 24000)[None]
    with torch.inference_mode():
        frames = encodec.encode(wav24)
        enc = timed(lambda: encodec.encode(wav24), args.repeats)
        dec = timed(lambda: encodec.decode(frames), args.repeats)
    rows.append(("EnCodec 24 kHz architecture (random weights), 6 kbps", enc, dec))

    ref_enc, ref_dec = rows[-1][1], rows[-1][2]
    lines = [
        f"{args.seconds:g} s of audio per run, {args.threads} threads, median of {args.repeats}.",
        "",
        "| codec | encode x real time | decode x real time | encode speed vs EnCodec | decode speed vs EnCodec |",
        "|---|---|---|---|---|",
    ]
    for name, enc, dec in rows:
        lines.append(
            f"| {name} | {args.seconds / enc:.0f} | {args.seconds / dec:.0f} | {ref_enc / enc:.1f}x | {ref_dec / dec:.1f}x |"
        )
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        update_section("Codec speed", body)


if __name__ == "__main__":
    main()
