"""Training-step time of the shipped codec: losses apart or sharing spectra, fp32 or bf16 autocast.

    python bench/train_step_speed.py [--threads 2] [--steps 12]

One generator step of the CPU recipe (batch 12 x 1 s of noise-and-chirp audio, reconstruction losses
only, AdamW) with ``MultiResolutionMelLoss`` and ``MultiResolutionSTFTLoss`` called one after the other
(every STFT taken twice where their window sizes overlap) against ``ReconstructionLoss`` (one STFT per
window size and signal), and the latter again under bf16 autocast (``train.mixed_precision: bf16``;
the quantizer stays fp32). The arms alternate step by step in one process, on a copy of the same
weights each, so machine noise falls on all; the section quotes medians and their ratios, and each
arm's mean train mel so a precision loss would show. Writes BENCHMARKS.md "Training step: shared loss
spectra and bf16".
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.report import update_section  # noqa: E402
from codec.nn.model import AudiotokCodec  # noqa: E402
from codec.train.loop import cpu_has_native_bf16  # noqa: E402
from codec.train.losses import MultiResolutionMelLoss, MultiResolutionSTFTLoss, ReconstructionLoss  # noqa: E402


def batch(size: int, sample_rate: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    t = torch.arange(sample_rate) / sample_rate
    chirp = torch.sin(2 * torch.pi * (100 + 3000 * t) * t)
    return 0.2 * chirp + 0.05 * torch.randn(size, sample_rate, generator=g)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codec", default="codec/weights/default")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=12, help="timed steps per arm (after one warm-up each)")
    parser.add_argument("--batch", type=int, default=12)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = AudiotokCodec.from_pretrained(args.codec).model.float().train()
    mel, stft = MultiResolutionMelLoss(base.config.sample_rate), MultiResolutionSTFTLoss()
    shared = ReconstructionLoss(mel, stft)
    arms = {  # name -> (its own copy of the weights, losses, bf16 autocast)
        "apart, fp32": (copy.deepcopy(base), lambda p, t: (mel(p, t), stft(p, t)), False),
        "shared, fp32": (copy.deepcopy(base), shared, False),
        "shared, bf16 autocast": (copy.deepcopy(base), shared, True),
    }
    mels: dict[str, list[float]] = {name: [] for name in arms}
    optims = {name: torch.optim.AdamW(model.parameters(), 3e-4) for name, (model, _, _) in arms.items()}
    wav = batch(args.batch, base.config.sample_rate)
    times: dict[str, list[float]] = {name: [] for name in arms}
    loss_times: dict[str, list[float]] = {name: [] for name in arms}  # after the forward pass
    for step in range(args.steps + 1):
        for name, (model, losses, bf16) in arms.items():
            torch.manual_seed(step)  # the same quantizer dropout in both arms
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                rec = model(wav).wav
            mark = time.perf_counter()
            m, s = losses(rec, wav)
            total = 15 * m + 2 * s
            optims[name].zero_grad()
            total.backward()
            optims[name].step()
            end = time.perf_counter()
            if step:  # the first step of each arm warms up
                times[name].append(end - start)
                loss_times[name].append(end - mark)
                mels[name].append(float(m))
    med = {name: statistics.median(v) for name, v in times.items()}
    med_loss = {name: statistics.median(v) for name, v in loss_times.items()}
    base_time = med["apart, fp32"]
    body = "\n".join(
        [
            f"Batch {args.batch} x 1 s, {args.threads} threads, {args.steps} timed steps per arm, arms alternating,"
            " each arm training its own copy of the shipped weights on the same batch.",
            "",
            "| arm | step median (s) | x the first arm | loss + backward + AdamW median (s) | mean train mel |",
            "|---|---|---|---|---|",
            *(
                f"| {name} | {med[name]:.3f} | {med[name] / base_time:.3f} | {med_loss[name]:.3f}"
                f" | {statistics.fmean(mels[name]):.4f} |"
                for name in arms
            ),
            "",
            "Shared spectra give the same loss values as separate losses (tests/codec/test_train.py checks"
            " values and gradients). bf16 autocast runs the encoder, decoder and head in bf16, with the"
            " quantizer and the losses in fp32. This CPU computes bf16 natively (AVX512-BF16 or AMX): "
            f"{ {True: 'yes', False: 'no, so bf16 is emulated', None: 'unknown'}[cpu_has_native_bf16()] }."
            " (On an Intel Xeon with AVX512-BF16, git 5af3798's run of this bench: fp32 0.424 s, bf16 0.324 s,"
            " 0.77x. Where bf16 is emulated, codec.train warns and `--mixed-precision no` runs fp32.)",
        ]
    )
    print(body)
    update_section("Training step: shared loss spectra and bf16", body)


if __name__ == "__main__":
    main()
