"""Which half of the iSTFT head limits speech quality: its magnitudes or its phases?

    python bench/codec_oracle.py [--codec codec/weights/default] [--limit 20] [--num-codebooks 3,12]

For test-split speech items (first ``--crop-seconds``), the decoder's predicted STFT (the head's
magnitudes and phases on its own frames: n_fft, hop) is overlap-added four ways: as the codec does
(predicted magnitude and phase); predicted magnitude with the input's true phase; true magnitude with
the predicted phase; and true magnitude with true phase (a check of the synthesis: near-perfect).
PESQ-WB and STOI of each against the input show how much each half costs. Writes the section ``--title``
("Codec diagnosis: magnitude vs phase") of BENCHMARKS.md (``--no-write`` prints only).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.codec_compare import load_crop, test_rows  # noqa: E402
from bench.report import update_section  # noqa: E402
from codec.nn.model import AudiotokCodec, ISTFTHead  # noqa: E402
from eval.metrics import pesq_wb, stoi  # noqa: E402

WAYS = (
    "codec (predicted magnitude and phase)",
    "predicted magnitude, true phase",
    "true magnitude, predicted phase",
    "true magnitude, true phase",
)


def overlap_add(head: ISTFTHead, mag: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """``[1, T, F]`` magnitude and phase -> ``[1, T*hop]`` through the head's own synthesis."""
    return head.synthesize(torch.log(mag.clamp(min=1e-12)), phase, torch.ones(1, 1, mag.shape[1]))


def four_ways(model: torch.nn.Module, head: ISTFTHead, x: torch.Tensor, k: int) -> list[torch.Tensor]:
    """The codec's output at ``k`` codebooks and the three re-syntheses of `WAYS`, each ``[1, S]``."""
    captured: list[torch.Tensor] = []
    hook = head.out.register_forward_hook(lambda _m, _i, out, into=captured: into.append(out))
    with torch.no_grad():
        y = model(x, num_codebooks=k).wav
    hook.remove()
    log_mag, phase = captured[0].float().chunk(2, dim=-1)
    T = log_mag.shape[1]
    padded = F.pad(x, (head.left, head.n_fft - head.hop - head.left))
    true = torch.stft(padded, head.n_fft, head.hop, window=head.window, center=False, return_complex=True)
    true = true[..., :T].transpose(1, 2)  # (1, T, F) on the head's frames
    mag = torch.exp(log_mag).clamp(max=1e2)
    with torch.no_grad():
        return [
            y,
            overlap_add(head, mag, true.angle()),
            overlap_add(head, true.abs(), phase),
            overlap_add(head, true.abs(), true.angle()),
        ]


def pesq_stoi_table(first: str, ways, ks: list[int], scores: dict, pesq_digits: int = 2) -> list[str]:
    """Markdown rows: one per way, mean PESQ-WB and STOI at each codebook count (``scores[k, way]``)."""
    lines = [
        f"| {first} | " + " | ".join(f"k={k} PESQ-WB ↑ | k={k} STOI ↑" for k in ks) + " |",
        "|---|" + "---|---|" * len(ks),
    ]
    for way in ways:
        cells = []
        for k in ks:
            p, s = np.nanmean(np.array(scores[k, way], dtype=float), axis=0)
            cells.append(f"{p:.{pesq_digits}f} | {s:.3f}")
        lines.append(f"| {way} | " + " | ".join(cells) + " |")
    return lines


def add_speech_set_arguments(parser: argparse.ArgumentParser, codec_default: str) -> None:
    """The options of a diagnosis on a speech test split: codec, corpus, item count, crop, codebooks, threads."""
    parser.add_argument("--codec", default=codec_default)
    parser.add_argument("--corpus", default="data/corpus")
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--crop-seconds", type=float, default=6.0)
    parser.add_argument("--num-codebooks", default="3,12", help="comma-separated codebook counts")
    parser.add_argument("--threads", type=int, default=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_speech_set_arguments(parser, str(ROOT / "codec" / "weights" / "default"))
    parser.add_argument(
        "--title", default="Codec diagnosis: magnitude vs phase", help="BENCHMARKS.md section"
    )
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    codec = AudiotokCodec.from_pretrained(args.codec)
    model, head = codec.model, codec.model.head
    ks = [int(k) for k in args.num_codebooks.split(",")]
    rows = test_rows(args.corpus, "speech", args.limit)
    scores: dict[tuple[int, str], list] = {(k, w): [] for k in ks for w in WAYS}
    for r in rows:
        x = load_crop(args.corpus, r, args.crop_seconds, codec.sample_rate)
        x = x[:, : x.shape[-1] // head.hop * head.hop]
        for k in ks:
            for way, out in zip(WAYS, four_ways(model, head, x, k)):
                ref, deg = x[0], out[0, : x.shape[-1]]
                scores[k, way].append((pesq_wb(ref, deg), stoi(ref, deg)))
    lines = [
        f"Codec `{codec.codec_id}`; {len(rows)} speech items of the `{args.corpus}` test split, first"
        f" {args.crop_seconds:g} s each; the head's frames (n_fft {head.n_fft}, hop {head.hop}) overlap-added"
        " four ways, at each codebook count k. Means. The last row does not depend on k: a check of the synthesis.",
        "",
        *pesq_stoi_table("synthesis", WAYS, ks, scores),
    ]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        update_section(args.title, body)


if __name__ == "__main__":
    main()
