"""Tiny token stores made on the spot: a learnable code stream (each code follows from the one before)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from codec.store import StoreMeta, TokenStore


def learnable_codes(frames: int, num_codebooks: int, codebook_size: int, seed: int) -> np.ndarray:
    """``[K, T]``: codebook 0 steps by a fixed stride from a random start; codebook k is codebook 0 + k."""
    rng = np.random.default_rng(seed)
    start = int(rng.integers(codebook_size))
    base = (start + 3 * np.arange(frames)) % codebook_size
    return np.stack([(base + k) % codebook_size for k in range(num_codebooks)]).astype(np.int64)


def make_store(
    path: Path,
    items: int = 12,
    frames: int | list[int] = 40,
    num_codebooks: int = 3,
    codebook_size: int = 16,
    codec_id: str = "tiny-16k@000000000000",
    random: bool = False,
) -> Path:
    meta = StoreMeta(codec_id=codec_id, sample_rate=16000, frame_rate=50.0, num_codebooks=num_codebooks,
                     codebook_size=codebook_size)  # fmt: skip
    lengths = frames if isinstance(frames, list) else [frames] * items
    with TokenStore.create(path, meta) as store:
        for i, n in enumerate(lengths):
            if random:
                codes = np.random.default_rng(i).integers(0, codebook_size, (num_codebooks, n))
            else:
                codes = learnable_codes(n, num_codebooks, codebook_size, seed=i)
            store.append(f"item{i:03d}", codes, seconds=n / 50.0)
    return path
