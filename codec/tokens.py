"""The token API shared by every part of audiotok.

`AudioTokens` is the one container for discrete audio codes: ``codes`` is an integer tensor laid out
``[B, K, T]`` (batch, codebooks, frames), the only layout used anywhere in the project. ``lengths``
gives each item's valid frame count; frames at or past an item's length are padding and carry
``PAD_CODE``.

`Codec` is the protocol every codec implements, ours and the pretrained adapters alike. Guarantees
(each is tested for every codec):

* the codes of an item do not depend on its batch-mates or on padding;
* ``encode(wav, sr, num_codebooks=k)`` returns exactly the first ``k`` codebooks of the full encoding;
* a long file encoded in chunks gives the same codes as one pass (where the codec declares a
  finite ``receptive_field``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

PAD_CODE = -1


@dataclass
class AudioTokens:
    """Discrete codes of a batch of audio items.

    codes: int64 ``[B, K, T]``; positions ``t >= lengths[b]`` hold ``PAD_CODE``.
    lengths: int64 ``[B]``, valid frames per item.
    frame_rate: frames per second (may be fractional, e.g. 12.5 for Mimi).
    codebook_size: entries per codebook.
    codec_id: names the codec and the hash of its weights, e.g. ``"audiotok-16k@3f2a..."``.
    """

    codes: torch.Tensor
    lengths: torch.Tensor
    frame_rate: float
    codebook_size: int
    codec_id: str

    def __post_init__(self) -> None:
        if self.codes.dim() != 3:
            raise ValueError(f"AudioTokens.codes must be [B, K, T], got shape {tuple(self.codes.shape)}")
        if self.lengths.dim() != 1 or self.lengths.shape[0] != self.codes.shape[0]:
            raise ValueError(
                f"AudioTokens.lengths must be [B] with B={self.codes.shape[0]}, got {tuple(self.lengths.shape)}"
            )

    @property
    def batch_size(self) -> int:
        return self.codes.shape[0]

    @property
    def num_codebooks(self) -> int:
        return self.codes.shape[1]

    @property
    def num_frames(self) -> int:
        return self.codes.shape[2]

    def bits_per_second(self) -> float:
        """Bitrate of these codes with fixed-length codewords: K * log2(codebook_size) * frame_rate."""
        import math

        return self.num_codebooks * math.log2(self.codebook_size) * self.frame_rate

    def item(self, i: int) -> torch.Tensor:
        """The valid codes of item ``i``: ``[K, T_i]``."""
        return self.codes[i, :, : int(self.lengths[i])]

    def first_codebooks(self, k: int) -> AudioTokens:
        """The first ``k`` codebooks (a lower bitrate of the same encoding)."""
        if not 1 <= k <= self.num_codebooks:
            raise ValueError(f"num_codebooks must be in [1, {self.num_codebooks}], got {k}")
        return AudioTokens(
            self.codes[:, :k], self.lengths, self.frame_rate, self.codebook_size, self.codec_id
        )

    @staticmethod
    def from_items(
        items: list[torch.Tensor], frame_rate: float, codebook_size: int, codec_id: str
    ) -> AudioTokens:
        """Batch a list of ``[K, T_i]`` code tensors, padding with ``PAD_CODE``."""
        if not items:
            raise ValueError("from_items needs at least one item")
        num_codebooks = items[0].shape[0]
        max_frames = max(x.shape[1] for x in items)
        codes = torch.full((len(items), num_codebooks, max_frames), PAD_CODE, dtype=torch.long)
        for i, x in enumerate(items):
            if x.shape[0] != num_codebooks:
                raise ValueError(f"item {i} has {x.shape[0]} codebooks, expected {num_codebooks}")
            codes[i, :, : x.shape[1]] = x
        lengths = torch.tensor([x.shape[1] for x in items], dtype=torch.long)
        return AudioTokens(codes, lengths, frame_rate, codebook_size, codec_id)


@runtime_checkable
class Codec(Protocol):
    """What every codec offers. ``wav`` is float ``[B, C, S]`` (or ``[C, S]``, or ``[S]``)."""

    sample_rate: int
    channels: int
    frame_rate: float
    codebook_size: int
    num_codebooks: int
    codec_id: str

    def encode(
        self,
        wav: torch.Tensor,
        sample_rate: int,
        num_codebooks: int | None = None,
        lengths: torch.Tensor | None = None,
    ) -> AudioTokens:
        """Encode audio at ``sample_rate`` (resampled to the codec's rate). ``lengths``: valid samples
        per item (at ``sample_rate``) when ``wav`` is a padded batch."""
        ...

    def decode(self, tokens: AudioTokens) -> torch.Tensor:
        """Decode to float ``[B, channels, S]`` at ``self.sample_rate``; samples past an item's
        ``lengths[b] * sample_rate / frame_rate`` are zero."""
        ...


def as_batch(wav: torch.Tensor, channels: int) -> torch.Tensor:
    """Bring ``[S]``, ``[C, S]`` or ``[B, C, S]`` audio to float32 ``[B, C, S]`` with ``channels`` channels
    (mono codecs downmix; a mono input is repeated for multichannel codecs)."""
    if wav.dim() == 1:
        wav = wav[None, None]
    elif wav.dim() == 2:
        wav = wav[None]
    elif wav.dim() != 3:
        raise ValueError(f"audio must be [S], [C, S] or [B, C, S], got shape {tuple(wav.shape)}")
    wav = wav.float()
    if wav.shape[1] == channels:
        return wav
    if channels == 1:
        return wav.mean(dim=1, keepdim=True)
    if wav.shape[1] == 1:
        return wav.expand(-1, channels, -1).contiguous()
    raise ValueError(f"cannot map {wav.shape[1]} channels to a {channels}-channel codec")


def resample(wav: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    """Band-limited resampling along the last axis of ``[..., S]`` with soxr, the resampler that
    `codec.audio` uses for files, so ``codec.encode(wav, sr)`` and ``audiotok tokenize`` give the same
    codes for the same samples. Keeps dtype and device; not differentiable."""
    if orig_sr == new_sr:
        return wav
    from codec.audio import resample_audio

    lead, n = wav.shape[:-1], wav.shape[-1]
    frames = wav.detach().reshape(-1, n).t().to("cpu", torch.float32).numpy()  # (S, N): soxr's layout
    out = torch.from_numpy(resample_audio(frames, orig_sr, new_sr).T.copy())
    return out.reshape(*lead, out.shape[-1]).to(wav.device, wav.dtype)
