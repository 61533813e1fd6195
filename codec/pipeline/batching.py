"""How ``audiotok tokenize`` encodes: loaded items grouped by length into padded batches, and how many
batches run at once (one single-threaded encoder per core for our codec on a CPU).

Padding never changes an item's codes (the token API's guarantee, tested), so batching by length only
saves the work that padding would waste.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from codec.pipeline.streaming import supports_streaming


@dataclass
class Pending:
    """One loaded item waiting to be encoded. wav: float32 ``[1, S]`` at the codec's rate."""

    id: str
    wav: torch.Tensor
    source: str
    relpath: str
    sha256: str
    seconds: float
    channel: int | None


def length_batches(items: list[Pending], batch_samples: int) -> list[list[Pending]]:
    """Group items of similar length: sorted by length, each batch's padded size within ``batch_samples``."""
    batches: list[list[Pending]] = []
    current: list[Pending] = []
    for item in sorted(items, key=lambda x: x.wav.shape[-1]):
        if current and item.wav.shape[-1] * (len(current) + 1) > batch_samples:
            batches.append(current)
            current = []
        current.append(item)
    if current:
        batches.append(current)
    return batches


def encode_batch(codec: Any, wavs: list[torch.Tensor], num_codebooks: int) -> list[torch.Tensor]:
    """Codes ``[K, T_i]`` of each mono ``[1, S_i]`` wav, encoded as one zero-padded batch ``[B, 1, S_max]``."""
    max_len = max(w.shape[-1] for w in wavs)
    wav = torch.zeros(len(wavs), 1, max_len)  # (B, 1, S)
    for i, w in enumerate(wavs):
        wav[i, :, : w.shape[-1]] = w
    lengths = torch.tensor([w.shape[-1] for w in wavs], dtype=torch.long)
    with torch.inference_mode():
        tokens = codec.encode(wav, codec.sample_rate, num_codebooks=num_codebooks, lengths=lengths)
    return [tokens.item(i)[:num_codebooks].cpu() for i in range(len(wavs))]


def single_threaded_torch() -> None:
    torch.set_num_threads(1)  # this encoder thread only (torch's thread count is per thread once set)


def encoder_threads(codec: Any) -> int:
    """How many batches to encode at once: one per torch thread for our codec on the CPU, else 1.

    Independent single-threaded encoders use the cores better than one encoder spread over them
    (no OpenMP barriers, which stall whenever a reader takes a core), and our codec's ``encode`` is a
    pure function, safe to call from several threads. Adapters of pretrained codecs keep one caller.
    """
    if not supports_streaming(codec):
        return 1
    device = next(codec.model.parameters()).device
    return max(1, torch.get_num_threads()) if device.type == "cpu" else 1
