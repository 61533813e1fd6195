"""Codebook interleaving patterns: how ``[K, T]`` codes become a language model's sequence, and back.

A pattern is a *layout*: a table ``[Q, S]`` that says, for each of Q streams and S steps, which code
``(k, t)`` sits there, or that the cell is empty. Building a sequence gathers codes into the table;
reverting scatters them back. Every code appears in exactly one cell, so each pattern is exactly
invertible by construction, whatever K and T. This follows audiocraft's
``modules/codebooks_patterns.py`` (MusicGen, Copet et al. 2023), with one table instead of a list of
per-step coordinate lists.

Two kinds of pattern:
- one stream (Q = 1): `FlattenPattern` and `CoarseFirstPattern`. A plain causal LM reads one token per
  step; the shared `codec.vocab.Vocabulary` gives each codebook its own id block, so the token says
  which codebook it is.
- K streams (Q = K): `DelayPattern` and `ParallelPattern`. The model reads the K codes of a step at once
  (summed embeddings) and predicts the next step's K codes with K heads.

Example below: K = 3 codebooks, T = 4 frames; ``a1`` is codebook 0 at frame 1, ``b`` codebook 1, ``c``
codebook 2, ``.`` an empty cell.
"""

from __future__ import annotations

import torch

EMPTY = -1  # a cell of the layout that holds no code


class Pattern:
    """The layout ``[Q, S]`` of flat code indices ``k * T + t`` (or EMPTY), and gather/scatter over it."""

    name = "pattern"
    multi_stream = False

    def num_streams(self, num_codebooks: int) -> int:
        return num_codebooks if self.multi_stream else 1

    def layout(self, num_codebooks: int, num_frames: int) -> torch.Tensor:
        raise NotImplementedError

    def num_steps(self, num_codebooks: int, num_frames: int) -> int:
        return self.layout(num_codebooks, num_frames).shape[1]

    def codebook_of(self, num_codebooks: int, num_frames: int) -> torch.Tensor:
        """``[Q, S]``: the codebook of each cell (EMPTY where empty)."""
        layout = self.layout(num_codebooks, num_frames)
        return torch.where(layout >= 0, layout // max(num_frames, 1), EMPTY)

    def build(self, codes: torch.Tensor, empty: int) -> torch.Tensor:
        """codes ``[B, K, T]`` -> sequence ``[B, Q, S]``, ``empty`` in the empty cells."""
        B, K, T = codes.shape
        layout = self.layout(K, T)  # (Q, S)
        flat = codes.reshape(B, K * T)
        out = flat[:, layout.clamp(min=0).flatten()].reshape(B, *layout.shape)  # (B, Q, S)
        return torch.where(layout >= 0, out, torch.full_like(out, empty))

    def revert(self, sequence: torch.Tensor, num_codebooks: int, num_frames: int) -> torch.Tensor:
        """sequence ``[B, Q, S]`` -> codes ``[B, K, T]`` (the empty cells are dropped)."""
        layout = self.layout(num_codebooks, num_frames)
        if tuple(sequence.shape[1:]) != tuple(layout.shape):
            raise ValueError(
                f"{self.name}: a sequence of K={num_codebooks}, T={num_frames} has shape [B, "
                f"{layout.shape[0]}, {layout.shape[1]}], got {list(sequence.shape)}"
            )
        B = sequence.shape[0]
        filled = layout >= 0
        codes = sequence.new_empty(B, num_codebooks * num_frames)
        codes[:, layout[filled]] = sequence[:, filled]
        return codes.reshape(B, num_codebooks, num_frames)


class FlattenPattern(Pattern):
    """Frame-major: every code of frame 0, then of frame 1, ... One stream of K * T steps::

        a0 b0 c0 a1 b1 c1 a2 b2 c2 a3 b3 c3

    Each code sees all coarser codes of its frame and every code of earlier frames: the best quality
    per parameter (MusicGen's table), at K times the steps of `DelayPattern`.
    """

    name = "flatten"

    def layout(self, num_codebooks: int, num_frames: int) -> torch.Tensor:
        t = torch.arange(num_frames).repeat_interleave(num_codebooks)  # 0 0 0 1 1 1 ...
        k = torch.arange(num_codebooks).repeat(num_frames)  # 0 1 2 0 1 2 ...
        return (k * num_frames + t)[None]  # (1, K*T)


class CoarseFirstPattern(Pattern):
    """All of codebook 0 first, then the finer codebooks frame-major (audiocraft's unrolled pattern with
    the first codebook in front, as in AudioLM's coarse-then-fine split). One stream of K * T steps::

        a0 a1 a2 a3 b0 c0 b1 c1 b2 c2 b3 c3

    The whole coarse line is known before any fine code, so the fine codes condition on the future of
    the coarse line; a generator must produce the full coarse line before the first fine code.
    """

    name = "coarse_first"

    def layout(self, num_codebooks: int, num_frames: int) -> torch.Tensor:
        coarse = torch.arange(num_frames)
        fine = FlattenPattern().layout(num_codebooks - 1, num_frames)[0] + num_frames  # codebooks 1..K-1
        return torch.cat([coarse, fine])[None]  # (1, K*T)


class DelayPattern(Pattern):
    """MusicGen's delay: codebook k lags k frames; at each step the model emits K codes at once. K streams
    of T + K - 1 steps::

        a0 a1 a2 a3 .  .
        .  b0 b1 b2 b3 .
        .  .  c0 c1 c2 c3

    Code ``(k, t)`` is predicted after every code of codebooks < k at frames <= t and every code of
    frames < t: close to flatten's conditioning at about 1/K of its steps.
    """

    name = "delay"
    multi_stream = True

    def layout(self, num_codebooks: int, num_frames: int) -> torch.Tensor:
        steps = torch.arange(num_frames + num_codebooks - 1)
        k = torch.arange(num_codebooks)[:, None]
        t = steps[None, :] - k  # (K, S): frame of codebook k at each step
        return torch.where((t >= 0) & (t < num_frames), k * num_frames + t, EMPTY)


class ParallelPattern(Pattern):
    """All K codes of a frame at one step, none conditioned on another of its frame. K streams of T
    steps::

        a0 a1 a2 a3
        b0 b1 b2 b3
        c0 c1 c2 c3

    The fastest and the weakest: the codes of a frame are sampled independently (a depth head restores
    their dependence: `tokenlm.model.MultiStreamConfig.depth_layers`).
    """

    name = "parallel"
    multi_stream = True

    def layout(self, num_codebooks: int, num_frames: int) -> torch.Tensor:
        return torch.arange(num_codebooks * num_frames).reshape(num_codebooks, num_frames)


PATTERNS: dict[str, type[Pattern]] = {
    p.name: p for p in (FlattenPattern, CoarseFirstPattern, DelayPattern, ParallelPattern)
}


def get_pattern(name: str) -> Pattern:
    """The pattern called ``name`` (flatten, coarse_first, delay, parallel); one clear error otherwise."""
    if name not in PATTERNS:
        raise ValueError(f"unknown pattern {name!r}; choose one of {', '.join(PATTERNS)}")
    return PATTERNS[name]()
