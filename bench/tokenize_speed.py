"""Tokenization throughput: the `audiotok tokenize` pipeline vs a naive per-file loop, 1 vs 2 processes,
and peak memory on an hour-long file.

    python bench/tokenize_speed.py [--codec default] [--minutes 120] [--long-file-minutes 60]

1. Builds a folder of mixed synthetic files (``--minutes`` of audio in total: tones, chirps and noise,
   1-40 s each, 16/22.05/44.1/48 kHz, mono and stereo, wav/flac/ogg), deterministic from ``--seed``.
2. In this process, with the same codec: the naive loop (for each file: load, resample, encode alone,
   append) and the pipeline (`codec.tokenize.tokenize`: reader threads, length batching, one
   single-threaded encoder thread per core); ratio reported. Then where the time goes: the naive loop's
   reading vs encoding time, and the encoder alone on one core, which bound what overlap can gain.
3. As subprocesses: ``python -m codec.cli tokenize`` with 1 process and under ``accelerate launch`` with
   ``--procs`` processes on the same input (the time inside tokenize, from ``--json``); ratio reported.
4. With ``--long-file-minutes M > 0``: one M-minute 44.1 kHz file, tokenized by a subprocess; its peak
   RSS (ru_maxrss) and time.

Figures go to BENCHMARKS.md, section "Tokenization" (with command, machine and date); ``--no-write``
prints them only. Speed is compared within one run: these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import update_section  # noqa: E402
from codec.audio import load_audio, sha256_file  # noqa: E402
from codec.pipeline.batching import encode_batch, encoder_threads, length_batches  # noqa: E402
from codec.pipeline.inputs import scan_inputs  # noqa: E402
from codec.pipeline.tokenize import TokenizeOptions, tokenize  # noqa: E402
from codec.registry import load_codec  # noqa: E402
from codec.store import StoreMeta, TokenStore  # noqa: E402


def synth(kind: str, seconds: float, sr: int, channels: int, rng: np.random.Generator) -> np.ndarray:
    """A test signal ``[S, C]``: a tone with vibrato, a chirp, or pink-ish noise bursts."""
    t = np.arange(int(seconds * sr)) / sr
    if kind == "tone":
        x = 0.3 * np.sin(2 * np.pi * rng.uniform(110, 880) * t + 3 * np.sin(2 * np.pi * 5 * t))
    elif kind == "chirp":
        f0, f1 = rng.uniform(80, 400), rng.uniform(1000, 6000)
        x = 0.3 * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds)))
    else:
        x = np.cumsum(rng.standard_normal(len(t))) * 0.002
        x = (x - np.convolve(x, np.ones(64) / 64, mode="same")) * (np.sin(2 * np.pi * 2 * t) > 0)
    x = x.astype(np.float32)
    return np.stack([x * (0.8 + 0.2 * c) for c in range(channels)], axis=1)


def build_folder(folder: Path, minutes: float, seed: int) -> tuple[int, float]:
    """Write mixed files totalling ``minutes`` of audio; returns (files, seconds)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    total, count = 0.0, 0
    while total < minutes * 60:
        seconds = float(min(rng.uniform(1, 40), minutes * 60 - total + 0.5))
        sr = int(rng.choice([16000, 22050, 44100, 48000]))
        channels = int(rng.choice([1, 1, 2]))
        ext, subtype = [("wav", "PCM_16"), ("flac", "PCM_16"), ("ogg", "VORBIS")][count % 3]
        data = synth(["tone", "chirp", "noise"][count % 3], seconds, sr, channels, rng)
        sub = folder / f"sub{count % 4}"
        sub.mkdir(exist_ok=True)
        sf.write(sub / f"{count:05d}.{ext}", data, sr, subtype=subtype)
        total, count = total + seconds, count + 1
    return count, total


def naive_loop(codec, folder: Path, store_path: Path) -> dict[str, float]:
    """The baseline: one file at a time, decode then encode then append.

    Returns the seconds taken in all (``wall``) and in `load_audio` (``read``) and ``codec.encode``
    (``encode``); the two clocks read around the calls cost nothing next to them.
    """
    meta = StoreMeta(
        codec.codec_id,
        int(codec.sample_rate),
        codec.frame_rate,
        codec.num_codebooks,
        int(codec.codebook_size),
    )
    read = encode = 0.0
    start = time.perf_counter()
    with TokenStore.create(store_path, meta) as store:
        for f in scan_inputs([str(folder)]).files:
            t0 = time.perf_counter()
            audio = load_audio(f.path, codec.sample_rate)
            t1 = time.perf_counter()
            with torch.inference_mode():
                codes = codec.encode(audio.wav[None], codec.sample_rate).item(0)
            t2 = time.perf_counter()
            read, encode = read + t1 - t0, encode + t2 - t1
            store.append(f.relpath, codes, source=str(f.path), relpath=f.relpath, sha256=sha256_file(f.path))
    return {"wall": time.perf_counter() - start, "read": read, "encode": encode}


def encoder_alone(codec, folder: Path, seconds: float = 600.0) -> float:
    """Audio seconds per second of the pipeline's encoding (length-sorted batches, `encode_batch`) on
    one core, over the folder's first ``seconds`` of audio, read beforehand."""
    items, total = [], 0.0
    for f in scan_inputs([str(folder)]).files:
        items.append(SimpleNamespace(wav=load_audio(f.path, codec.sample_rate).wav))  # (1, S)
        total += items[-1].wav.shape[-1] / codec.sample_rate
        if total >= seconds:
            break
    batch_samples = int(TokenizeOptions().batch_seconds * codec.sample_rate)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.perf_counter()
        for batch in length_batches(items, batch_samples):
            encode_batch(codec, [x.wav for x in batch], codec.num_codebooks)
        return total / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)


def cli_run(prefix: list[str], folder: Path, store: Path, codec: str, extra: list[str] = ()) -> dict:
    cmd = [
        *prefix,
        "audiotok",
        "tokenize",
        str(folder),
        "-o",
        str(store),
        "--codec",
        codec,
        "--json",
        *extra,
    ]
    result = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{result.stderr[-3000:]}")
    return json.loads(lines[-1])


def launcher(n: int) -> list[str]:
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable))
    if accelerate:
        return [accelerate, "launch", "--multi_gpu", "--num_processes", str(n), "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no", "-m"]  # fmt: skip
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n), "-m"]


def long_file(work: Path, minutes: float, codec: str) -> dict:
    """One ``minutes``-long 44.1 kHz mono file (written in blocks), tokenized in a child; peak RSS."""
    path = work / "long.wav"
    rng = np.random.default_rng(1)
    with sf.SoundFile(path, "w", 44100, 1, subtype="PCM_16") as f:
        for _ in range(int(minutes * 6)):
            f.write(synth(["tone", "chirp", "noise"][rng.integers(3)], 10.0, 44100, 1, rng))
    probe = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        "r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "print(r.stdout.strip().splitlines()[-1] if r.stdout.strip() else '{}'); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.perf_counter() - t); "
        "sys.stderr.write(r.stderr[-2000:])"
    )
    cmd = [sys.executable, "-c", probe, sys.executable, "-m", "audiotok", "tokenize", str(path), "-o",
           str(work / "long_store"), "--codec", codec, "--json"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True)
    summary_line, rss_line = result.stdout.strip().splitlines()[-2:]
    rss_kb, wall = rss_line.split()
    summary = json.loads(summary_line)
    if summary.get("stored") != 1:
        raise SystemExit(f"long file failed: {result.stderr[-3000:]}")
    return {"minutes": minutes, "peak_rss_mb": int(rss_kb) / 1024, "wall_s": float(wall), **summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--codec", default="default", help="codec name or folder (default: the shipped codec)"
    )
    parser.add_argument("--minutes", type=float, default=2.0, help="total audio in the mixed folder")
    parser.add_argument(
        "--long-file-minutes", type=float, default=0.0, help="also time one file this long (0: skip)"
    )
    parser.add_argument("--procs", type=int, default=2, help="processes for the scaling comparison")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic folder")
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one, removed)")
    parser.add_argument("--no-write", action="store_true", help="print only, leave BENCHMARKS.md alone")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="tokbench-"))
    codec_spec = os.path.abspath(args.codec) if os.path.exists(args.codec) else args.codec
    try:
        files, seconds = build_folder(work / "in", args.minutes, args.seed)
        codec = load_codec(codec_spec)
        naive = naive_loop(codec, work / "in", work / "naive")
        naive_s = naive["wall"]
        pipe = tokenize(
            scan_inputs([str(work / "in")]).files, work / "pipe", codec, TokenizeOptions(quiet=True)
        )
        encoder_rate = encoder_alone(codec, work / "in")
        cores = torch.get_num_threads()
        # Every audio second costs its reading plus its encoding on one core: what `cores` cores do
        # with perfect overlap and no contention between them.
        bound = cores / (naive["read"] / seconds + 1 / encoder_rate)
        one = cli_run([sys.executable, "-m"], work / "in", work / "one", codec_spec)
        many = cli_run(launcher(args.procs), work / "in", work / "many", codec_spec)
        lines = [
            f"Mixed folder: {files} files, {seconds / 60:.1f} min of audio (16-48 kHz, mono/stereo, wav/flac/ogg); "
            f"codec `{codec.codec_id}`, {codec.num_codebooks} codebooks.",
            "",
            "| run | wall s | audio s / s | ratio |",
            "|---|---|---|---|",
            f"| naive per-file loop (same process) | {naive_s:.1f} | {seconds / naive_s:.0f} | 1.00 |",
            f"| pipeline (same process, {TokenizeOptions().jobs} reader threads, {encoder_threads(codec)} encoder "
            f"threads) | {pipe.wall_seconds:.1f} | {pipe.seconds / pipe.wall_seconds:.0f} | "
            f"{naive_s / pipe.wall_seconds:.2f} |",
            f"| `audiotok tokenize`, 1 process | {one['wall_seconds']:.1f} | {one['audio_seconds_per_second']:.0f} | 1.00 |",
            f"| `accelerate launch`, {args.procs} processes | {many['wall_seconds']:.1f} | "
            f"{many['audio_seconds_per_second']:.0f} | {one['wall_seconds'] / many['wall_seconds']:.2f} |",
        ]
        naive_rate = seconds / naive_s
        lines += [
            "",
            f"Where the time goes: the naive loop spends {naive['read']:.1f} s reading (decode, downmix, "
            f"resample) and {naive['encode']:.1f} s encoding ({cores} torch threads). The pipeline's "
            f"encoding alone runs {encoder_rate:.0f} audio s / s on one core. With reading and encoding "
            f"overlapped perfectly on {cores} cores (each audio second costs its reading plus its encoding "
            f"on one core) the pipeline would reach about {bound:.0f} audio s / s, "
            f"{bound / naive_rate:.2f}x the naive loop; even free reading would give "
            f"{cores * encoder_rate:.0f} audio s / s, {cores * encoder_rate / naive_rate:.2f}x.",
        ]
        if args.long_file_minutes > 0:
            long = long_file(work, args.long_file_minutes, codec_spec)
            lines += [
                "",
                f"One {long['minutes']:g}-minute 44.1 kHz file: peak RSS {long['peak_rss_mb']:.0f} MB, "
                f"{long['wall_s']:.1f} s wall including start-up ({long['audio_seconds_per_second']:.0f} audio s / s "
                "inside tokenize).",
            ]
        body = "\n".join(lines)
        print(body)
        if not args.no_write:
            update_section("Tokenization", body)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
