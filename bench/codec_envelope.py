"""Does the codec's band envelope cost it quality? Its level deficit per band, and an oracle that corrects it.

    python bench/codec_envelope.py [--codec codec/weights/default] [--corpus data/corpus] [--limit 20]
        [--num-codebooks 3,12] [--title "Codec diagnosis: band envelope on ..."]

For speech items of a test split (first ``--crop-seconds``), the codec's output at k codebooks is compared
with its input in the bands of codec/losses.py's BandEnvelopeLoss (24 mel bands of a 512-point power
spectrogram): the mean level difference (dB, output - input) of band energies averaged over 104 ms, in the
band-frames within 30 dB of the item's loudest, per frequency region. Then the output is re-synthesised
with each band's energy set to the input's (the gain spread over the band's bins by the filterbank, the
phase kept): over the whole item (a static equaliser), or frame by frame smoothed over 104 or 40 ms.
PESQ-WB and STOI of each show how much of the gap is the envelope, i.e. what a loss on it could buy; the
oracle uses the input, so it is an upper bound, not a codec. Writes the section ``--title`` of
BENCHMARKS.md (``--no-write`` prints only).
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
from bench.codec_oracle import add_speech_set_arguments, pesq_stoi_table  # noqa: E402
from bench.report import update_section  # noqa: E402
from codec.nn.model import AudiotokCodec  # noqa: E402
from codec.train.losses import BandEnvelopeLoss  # noqa: E402
from eval.metrics import pesq_wb, stoi  # noqa: E402

REGIONS_HZ = (0, 300, 1000, 2000, 3400, 5500, 8000)
WAYS = {"codec": -1, "static equaliser (whole item)": 0, "envelope, 104 ms": 13, "envelope, 40 ms": 5}


def smooth(power: torch.Tensor, frames: int) -> torch.Tensor:
    """``[B, bands, T]`` averaged over ``frames`` frames (centred, same length); 0 = over the whole item."""
    if frames == 0:
        return power.mean(dim=-1, keepdim=True).expand_as(power)
    padded = F.pad(power, (frames // 2, frames - 1 - frames // 2), mode="replicate")
    return F.avg_pool1d(padded, frames, stride=1)


def equalise(env: BandEnvelopeLoss, x: torch.Tensor, y: torch.Tensor, frames: int) -> torch.Tensor:
    """``y`` with its band energies (smoothed over ``frames``) set to ``x``'s; phase kept."""
    spec = torch.stft(y, env.window, env.window // 4, window=env.hann, return_complex=True)
    bx, by = smooth(env.band_power(x), frames), smooth(env.band_power(y), frames)
    gain = ((bx + 1e-10) / (by + 1e-10)).sqrt().clamp(0.1, 10.0)  # [B, bands, T]
    spread = env.fbank.T / env.fbank.T.sum(dim=1, keepdim=True).clamp(min=1e-8)  # [F, bands], rows sum to 1
    return torch.istft(
        spec * (spread @ gain), env.window, env.window // 4, window=env.hann, length=y.shape[-1]
    )


def region_deficits(
    env: BandEnvelopeLoss, x: torch.Tensor, y: torch.Tensor, centres: np.ndarray
) -> list[float]:
    """Mean dB (output - input) of 104 ms band energies within 30 dB of the item's loudest, per region."""
    bx, by = smooth(env.band_power(x), 13)[0], smooth(env.band_power(y), 13)[0]
    active = bx > bx.max() * 1e-3
    diff = 10 * (by.clamp(min=1e-10).log10() - bx.clamp(min=1e-10).log10())
    out = []
    for lo, hi in zip(REGIONS_HZ[:-1], REGIONS_HZ[1:]):
        rows = torch.from_numpy((centres >= lo) & (centres < hi))
        mask = active & rows[:, None]
        out.append(float(diff[mask].mean()) if mask.any() else float("nan"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_speech_set_arguments(parser, "codec/weights/default")
    parser.add_argument(
        "--title", help="BENCHMARKS.md section (default: 'Codec diagnosis: band envelope on CORPUS')"
    )
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    codec = AudiotokCodec.from_pretrained(args.codec)
    env = BandEnvelopeLoss(codec.sample_rate)
    # Centre frequency of each band: the filterbank-weighted mean of its bins' frequencies.
    freqs = torch.linspace(0, codec.sample_rate / 2, env.fbank.shape[1])
    centres = ((env.fbank * freqs).sum(1) / env.fbank.sum(1).clamp(min=1e-8)).numpy()
    ks = [int(k) for k in args.num_codebooks.split(",")]
    rows = test_rows(args.corpus, "speech", args.limit)
    scores = {(k, w): [] for k in ks for w in WAYS}
    deficits: dict[int, list] = {k: [] for k in ks}
    for r in rows:
        x = load_crop(args.corpus, r, args.crop_seconds, codec.sample_rate)
        for k in ks:
            with torch.no_grad():
                y = codec.model(x, num_codebooks=k).wav[:, : x.shape[-1]]
                deficits[k].append(region_deficits(env, x, y, centres))
                for way, frames in WAYS.items():
                    out = y if frames < 0 else equalise(env, x, y, frames)
                    scores[k, way].append((pesq_wb(x[0], out[0]), stoi(x[0], out[0])))
    regions = [f"{lo / 1000:g}-{hi / 1000:g} kHz" for lo, hi in zip(REGIONS_HZ[:-1], REGIONS_HZ[1:])]
    lines = [
        f"Codec `{codec.codec_id}`; {len(rows)} speech items of the `{args.corpus}` test split, first"
        f" {args.crop_seconds:g} s each. Command: `python bench/codec_envelope.py --codec {args.codec}"
        f" --corpus {args.corpus} --limit {args.limit}`.",
        "",
        "Level of the output against the input (dB, mean over band-frames within 30 dB of each item's"
        " loudest; 104 ms band energies; negative = quieter):",
        "",
        "| k | " + " | ".join(regions) + " |",
        "|---|" + "---|" * len(regions),
    ]
    for k in ks:
        lines.append(f"| {k} | " + " | ".join(f"{v:+.1f}" for v in np.nanmean(deficits[k], axis=0)) + " |")
    lines += [
        "",
        "The output with its band energies set to the input's (an oracle: it reads the input). Means.",
        "",
        *pesq_stoi_table("output", WAYS, ks, scores, pesq_digits=3),
    ]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        update_section(args.title or f"Codec diagnosis: band envelope on {args.corpus}", body)


if __name__ == "__main__":
    main()
