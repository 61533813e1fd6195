"""CUDA correctness and throughput of a codec, against the CPU in the same process.

    python bench/codec_cuda.py --json report.json [--codec codec/weights/default] [--seconds 60] [--batch 16]
    python bench/codec_cuda.py --from-json report.json     # here: the section "Codec on CUDA"

On a CUDA machine: the share of codes of the bundled examples that agree between the CPU (fp32) and
CUDA with TF32 off and on, the SNR of the CUDA decode of the CPU codes against the CPU decode, and
CUDA encode/decode speed in seconds of audio per second (batch of random audio, median of 3 after a
warm-up; TF32 left on, PyTorch's default for convolutions). The report (with command, machine and date)
goes to ``--json``; lent GPU machines cannot write this repository's BENCHMARKS.md, so ``--from-json``
renders a saved report into it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import update_section  # noqa: E402
from codec.nn.model import AudiotokCodec  # noqa: E402

KINDS = ("speech", "music", "sfx")


def timed(fn, repeats: int = 3) -> float:
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(codec_dir: str, seconds: float, batch: int) -> dict:
    import soundfile as sf

    cpu = AudiotokCodec.from_pretrained(codec_dir)
    gpu = AudiotokCodec.from_pretrained(codec_dir, device="cuda")
    report: dict = {
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "machine": f"{torch.cuda.get_device_name()}, torch {torch.__version__}, Python {platform.python_version()}",
        "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        "codec": cpu.codec_id,
    }
    for name in KINDS:
        wav, sr = sf.read(ROOT / "examples" / f"{name}.wav", dtype="float32", always_2d=True)
        x = torch.from_numpy(wav.T.copy())
        a = cpu.encode(x, sr)
        for tf32 in (False, True):
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32
            b = gpu.encode(x, sr)
            report[f"{name}/codes_equal_tf32_{'on' if tf32 else 'off'}"] = round(
                float((a.codes == b.codes).float().mean()), 4
            )
        ref, got = cpu.decode(a)[0, 0], gpu.decode(a)[0, 0]
        snr = 10 * torch.log10(ref.pow(2).sum() / (ref - got).pow(2).sum().clamp(min=1e-12))
        report[f"{name}/decode_snr_db"] = round(float(snr), 1)
    x = torch.randn(batch, 1, int(seconds * cpu.sample_rate)) * 0.1
    tokens = gpu.encode(x, cpu.sample_rate)
    report["encode_audio_s_per_s"] = round(batch * seconds / timed(lambda: gpu.encode(x, cpu.sample_rate)))
    report["decode_audio_s_per_s"] = round(batch * seconds / timed(lambda: gpu.decode(tokens)))
    report["speed_input"] = f"batch {batch} x {seconds:g} s"
    return report


def render(report: dict) -> str:
    lines = [
        f"Codec `{report.get('codec', '?')}`; the bundled examples (examples/*.wav) encoded on the CPU (fp32) and on CUDA.",
        "",
        "| example | codes equal, TF32 off | codes equal, TF32 on | CUDA decode of CPU codes, SNR vs CPU decode |",
        "|---|---|---|---|",
    ]
    for name in KINDS:
        lines.append(
            f"| {name} | {report[f'{name}/codes_equal_tf32_off']:.2%} | {report[f'{name}/codes_equal_tf32_on']:.2%} "
            f"| {report[f'{name}/decode_snr_db']} dB |"
        )
    lines += [
        "",
        f"CUDA speed ({report.get('speed_input', 'batch 16 x 60 s')} of random audio, TF32 on, median of 3): "
        f"encode {report['encode_audio_s_per_s']:,} s of audio per s, decode {report['decode_audio_s_per_s']:,}.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codec", default=str(ROOT / "codec" / "weights" / "default"))
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--json", help="write the measured report here")
    parser.add_argument("--from-json", help="render a saved report into BENCHMARKS.md (no GPU needed)")
    parser.add_argument("--title", default="Codec on CUDA")
    args = parser.parse_args()
    if args.from_json:
        report = json.loads(Path(args.from_json).read_text())
        update_section(args.title, render(report), recorded=report)
        print(render(report))
        return
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run this on a GPU machine, then --from-json here")
    report = measure(args.codec, args.seconds, args.batch)
    print(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
