"""The reader side of ``audiotok tokenize``: check, hash, decode and resample files ahead of the encoder.

Reading uses numpy, soundfile and soxr only (`codec.audio.read_audio`), never torch: reader threads
then never enter torch's thread pool, which the encoder threads keep busy, and they hold the GIL only
between C calls (libsndfile, soxr, hashlib and numpy release it). Worker processes were measured too
(bench/tokenize_speed.py's folder): slower here, since every array then crosses a pipe, and a script
calling `tokenize` without an ``if __name__ == "__main__"`` guard would break under ``spawn``.

`read_ahead` yields one `Prepared` per input file, in input order, computed by ``jobs`` threads at most
``2 * jobs + 2`` files ahead (memory stays bounded; the order does not depend on which thread finishes
first). A bad file never raises: its `Prepared` carries the error message.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from codec.audio import (
    AudioError,
    check_path,
    display_path,
    probe_audio,
    read_audio,
    sha256_file,
)
from codec.pipeline.inputs import InputFile


def default_jobs() -> int:
    """Reader threads by default: one per core this process may use, at most 8 (shared by per-rank
    processes on one machine). Lives here, without torch, so `--help` can show it quickly."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, min(8, cores // max(1, local_world)))


@dataclass(frozen=True)
class ReadOptions:
    """What the readers need to know."""

    sample_rate: int  # the codec's
    channels: str = "downmix"  # or "split"
    max_seconds: float | None = None
    long_seconds: float | None = None  # longer files are left to the streaming path; None: never
    skip_hashes: frozenset[str] = frozenset()  # sources already stored (not consulted with "split")


@dataclass
class Prepared:
    """A file after its reader: failed, skipped, loaded, or to be streamed by the encoder's side.

    wav: float32 ``[C, S]`` at the codec's rate (C=1 after downmix), when loaded.
    """

    file: InputFile
    sha256: str = ""
    wav: np.ndarray | None = None
    stream: bool = False
    skipped: bool = False
    error: str | None = None


def prepare(file: InputFile, options: ReadOptions) -> Prepared:
    """Check, hash, and (unless it is long) load and resample one file; never raises for a bad file."""
    out = Prepared(file)
    try:
        check_path(file.path)  # before opening: a fifo named .wav would block
        out.sha256 = sha256_file(file.path)
        if options.channels != "split" and out.sha256 in options.skip_hashes:
            out.skipped = True
            return out
        header = probe_audio(file.path, options.max_seconds)
        if options.long_seconds is not None and header.seconds > options.long_seconds:
            out.stream = True
        else:
            out.wav, _ = read_audio(file.path, options.sample_rate, options.channels, options.max_seconds)
    except AudioError as e:
        out.error = str(e)
    except OSError as e:
        out.error = f"{display_path(file.path)}: cannot be read ({e.strerror or e}); check the file."
    return out


def read_ahead(files: list[InputFile], options: ReadOptions, jobs: int) -> Iterator[Prepared]:
    """`prepare` of each file, in order, by ``jobs`` threads at most ``2 * jobs + 2`` files ahead.

    ``jobs=0`` reads in the calling thread. Closing the iterator early waits for the running reads only.
    """
    if jobs <= 0 or not files:
        yield from (prepare(f, options) for f in files)
        return
    with ThreadPoolExecutor(min(jobs, len(files)), thread_name_prefix="audiotok-read") as pool:
        window: collections.deque[Future] = collections.deque()
        try:
            for file in files:
                window.append(pool.submit(prepare, file, options))
                if len(window) > 2 * jobs + 2:
                    yield window.popleft().result()
            while window:
                yield window.popleft().result()
        finally:
            for future in window:
                future.cancel()
