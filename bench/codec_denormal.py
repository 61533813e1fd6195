"""Does flushing denormals to zero speed up encoding? The shipped codec with and without the flag, in one run.

    python bench/codec_denormal.py [--seconds 60] [--threads 2] [--rounds 15]

``torch.set_flush_denormal(True)`` sets the FTZ/DAZ bits of the calling thread only (MXCSR is per
thread): set after torch's OpenMP pool exists, it misses the worker threads. The "flag, every thread"
leg therefore also sets it inside each pool thread (through libgomp's ``GOMP_parallel``); "flag, main
thread" is the usual call. Legs run interleaved in rotating order, and the no-flag leg runs twice, so
the spread between its two copies is the noise floor. Also checks that the codes of the bundled clips
are the same with and without the flag. `tests/codec/test_denormal.py` checks that the encoder makes no
subnormal float32 values at all.
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.codec_speed import signal  # noqa: E402
from bench.report import update_section  # noqa: E402
from codec.audio import load_audio  # noqa: E402
from codec.registry import load_codec  # noqa: E402

_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


def _libgomp() -> ctypes.CDLL | None:
    with open("/proc/self/maps") as maps:
        for line in maps:
            if "libgomp" in line:
                return ctypes.CDLL(line.split()[-1])
    return None


def set_flush_everywhere(on: bool, gomp: ctypes.CDLL | None) -> None:
    """The flag on this thread and on every thread of torch's OpenMP pool."""
    torch.set_flush_denormal(on)
    if gomp is not None:
        callback = _CALLBACK(lambda _: torch.set_flush_denormal(on))
        gomp.GOMP_parallel(callback, None, ctypes.c_uint(torch.get_num_threads()), ctypes.c_uint(0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="audio length per encode")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--rounds", type=int, default=15, help="rounds of the interleaved legs (median)")
    parser.add_argument("--no-write", action="store_true", help="print only; do not update BENCHMARKS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    codec = load_codec("default")
    wav = signal(args.seconds, codec.sample_rate)[None, None]
    codec.encode(wav, codec.sample_rate)  # warm-up; also starts the OpenMP pool
    gomp = _libgomp()
    legs = {
        "no flag": lambda: set_flush_everywhere(False, gomp),
        "flag, every thread": lambda: set_flush_everywhere(True, gomp),
        "flag, main thread": lambda: (set_flush_everywhere(False, gomp), torch.set_flush_denormal(True)),
        "no flag (again)": lambda: set_flush_everywhere(False, gomp),
    }
    names = list(legs)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            legs[name]()
            start = time.perf_counter()
            codec.encode(wav, codec.sample_rate)
            times[name].append(time.perf_counter() - start)
    set_flush_everywhere(False, gomp)
    base = statistics.median(times["no flag"])
    lines = [
        "| leg | encode x real time (median) | fastest | no flag / leg |",
        "|---|---|---|---|",
    ]
    for name in names:
        med = statistics.median(times[name])
        lines.append(
            f"| {name} | {args.seconds / med:.0f} | {args.seconds / min(times[name]):.0f} | {base / med:.3f} |"
        )
    equal = []
    for clip in sorted((ROOT / "examples").glob("*.wav")):
        audio = load_audio(clip, target_sr=codec.sample_rate).wav
        plain = codec.encode(audio, codec.sample_rate).codes
        set_flush_everywhere(True, gomp)
        flushed = codec.encode(audio, codec.sample_rate).codes
        set_flush_everywhere(False, gomp)
        equal.append(f"{clip.stem} {'equal' if torch.equal(plain, flushed) else 'DIFFER'}")
    body = "\n".join(
        [
            f"{args.seconds:.0f} s noise-plus-chirp signal, 12 codebooks, {args.threads} threads, "
            f"{args.rounds} interleaved rounds (libgomp {'found' if gomp else 'not found: every-thread leg = main thread'}).",
            "",
            *lines,
            "",
            f"Codes of the bundled clips with the flag on every thread vs off: {', '.join(equal)}.",
        ]
    )
    print(body)
    if not args.no_write:
        update_section("Codec speed: flushing denormals", body)


if __name__ == "__main__":
    main()
