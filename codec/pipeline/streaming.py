"""Streaming encode of one long file: blocks of samples in, the codes of ``codec.encode(whole file)`` out.

`ChunkedStreamEncoder` replays the codec's own chunk grid (``AudiotokCodec._encode_chunked``: ``chunk_frames``
per chunk, ``context_frames`` of overlap on each side), so memory holds about one chunk plus two contexts
whatever the file's length, and the codes are exactly those of one pass. Only codecs that declare that
receptive field can stream (`supports_streaming`); the pretrained adapters encode in one pass.

`in_background` runs the block reader in a thread, a couple of blocks ahead, so decoding overlaps encoding.
"""

from __future__ import annotations

import collections
import math
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F


def supports_streaming(codec: Any) -> bool:
    """Whether `ChunkedStreamEncoder` can drive ``codec`` (our codec; adapters encode in one pass)."""
    model = getattr(codec, "model", None)
    return (
        hasattr(model, "encode_latents")
        and hasattr(model, "quantizer")
        and all(hasattr(codec, a) for a in ("context_frames", "hop_length", "chunk_frames"))
    )


class ChunkedStreamEncoder:
    """Encodes a mono stream pushed in blocks of any size; `finish` returns codes equal to ``codec.encode``.

    It replays ``AudiotokCodec._encode_chunked`` for one item: chunk ``[start, stop)`` (``chunk_frames``
    long) is encoded from samples ``[lo*hop, hi*hop)`` with ``lo = start - context``, ``hi = stop +
    context`` clipped to the item, then cut to its own frames. A chunk is encoded as soon as its right
    context has arrived, and samples left of the next chunk's context are dropped, so memory holds about
    one chunk plus two contexts. Works for causal and non-causal codecs alike.
    """

    def __init__(self, codec: Any, num_codebooks: int | None = None):
        if not supports_streaming(codec):
            raise ValueError(
                f"codec {getattr(codec, 'codec_id', codec)!r} does not declare a receptive field"
            )
        self.codec = codec
        self.k = num_codebooks or codec.num_codebooks
        self.hop, self.chunk, self.context = codec.hop_length, codec.chunk_frames, codec.context_frames
        self.device = next(codec.model.parameters()).device
        self.buffer = torch.zeros(0)  # samples from absolute index buffer_start on
        self.buffer_start = 0  # always hop-aligned
        self.total_samples = 0
        self.next_frame = 0  # first frame not yet encoded
        self.pieces: list[torch.Tensor] = []  # (K, T_chunk) int16/int32 each

    def push(self, samples: torch.Tensor) -> None:
        """Append mono samples ``[S]`` at the codec's sample rate."""
        self.buffer = torch.cat([self.buffer, samples.detach().float().reshape(-1).cpu()])
        self.total_samples += samples.numel()
        while (self.next_frame + self.chunk + self.context) * self.hop <= self.total_samples:
            stop = self.next_frame + self.chunk
            self._encode(self.next_frame, stop, stop + self.context)

    def finish(self) -> torch.Tensor:
        """Codes ``[K, T]`` of the whole stream, ``T = ceil(samples / hop)`` (at least 1)."""
        total = max(1, math.ceil(self.total_samples / self.hop))
        while self.next_frame < total:
            stop = min(self.next_frame + self.chunk, total)
            self._encode(self.next_frame, stop, min(total, stop + self.context))
        return (
            torch.cat(self.pieces, dim=-1).long() if self.pieces else torch.zeros(self.k, 0, dtype=torch.long)
        )

    @torch.inference_mode()
    def _encode(self, start: int, stop: int, hi: int) -> None:
        lo = max(0, start - self.context)
        a, b = lo * self.hop - self.buffer_start, hi * self.hop - self.buffer_start
        x = F.pad(self.buffer[a:b], (0, max(0, (b - a) - len(self.buffer[a:b]))))  # zeros past the end
        model = self.codec.model
        latents = model.encode_latents(x[None].to(self.device), torch.tensor([hi - lo], device=self.device))
        codes = model.quantizer(latents, self.k).codes[0, :, start - lo : stop - lo]  # (K, stop - start)
        self.pieces.append(codes.to(torch.int32).cpu())
        self.next_frame = stop
        drop = max(0, (stop - self.context) * self.hop - self.buffer_start)  # left context of the next chunk
        self.buffer = self.buffer[drop:]
        self.buffer_start += drop


def encode_blocks(
    codec: Any, blocks: Iterable[torch.Tensor], num_codebooks: int | None = None
) -> torch.Tensor:
    """Codes ``[K, T]`` of a mono stream given as blocks ``[S_i]`` or ``[1, S_i]`` at the codec's rate."""
    encoder = ChunkedStreamEncoder(codec, num_codebooks)
    for block in blocks:
        encoder.push(block)
    return encoder.finish()


def in_background(iterator: Iterator, depth: int = 2) -> Iterator:
    """Run ``iterator`` in a thread, ``depth`` items ahead (reading overlaps encoding); re-raises its errors."""
    queue: collections.deque = collections.deque()
    ready = threading.Semaphore(0)
    room = threading.Semaphore(depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in iterator:
                room.acquire()
                if stop.is_set():
                    return
                queue.append((item, None))
                ready.release()
        except BaseException as e:  # handed to the consumer
            queue.append((None, e))
            ready.release()
            return
        queue.append((done, None))
        ready.release()

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            ready.acquire()
            item, error = queue.popleft()
            if error is not None:
                raise error
            if item is done:
                return
            room.release()
            yield item
    finally:
        stop.set()
        room.release()
