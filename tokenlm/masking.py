"""The masked objective (BEST-RQ / HuBERT style) on packed K-stream rows of the parallel pattern.

Span starts are drawn per frame with probability ``start_prob`` and each hides ``span`` frames (HuBERT's
p = 0.08 and 10 frames hide about half of them); a hidden frame's K cells read EMPTY, and its K codes
become the targets. Nothing else is a target, and BOS and padding steps are never hidden. The draw is a
pure function of the generator, so a batch's masks follow from (seed, step, rank) like its crops.
"""

from __future__ import annotations

import torch

from tokenlm.model import IGNORE


def mask_frames(
    batch: dict[str, torch.Tensor],
    generator: torch.Generator,
    empty: int,
    start_prob: float = 0.08,
    span: int = 10,
) -> dict[str, torch.Tensor]:
    """A packed batch (tokens, books ``[B, K, L]``) -> the same batch with hidden frames' cells set to
    ``empty`` and targets = their codes (IGNORE elsewhere); target_books = books."""
    tokens, books = batch["tokens"], batch["books"]
    B, _, L = tokens.shape
    is_code = books[:, 0] >= 0  # (B, L): frames, not BOS or padding
    starts = (torch.rand(B, L, generator=generator) < start_prob) & is_code
    hidden = torch.zeros(B, L + span, dtype=torch.bool)
    for offset in range(span):
        hidden[:, offset : offset + L] |= starts
    hidden = hidden[:, :L] & is_code
    out = dict(batch)
    out["tokens"] = torch.where(hidden[:, None], torch.full_like(tokens, empty), tokens)
    out["targets"] = torch.where(hidden[:, None], tokens, torch.full_like(tokens, IGNORE))
    out["target_books"] = books
    return out
