"""Residual vector quantization with factorized, L2-normalised codes (after DAC, Kumar et al. 2023).

Each stage projects the residual to a small ``codebook_dim`` space, looks the nearest code up by cosine
similarity (L2-normalised entries and queries), and projects back. Low-dimensional normalised lookups
keep every entry reachable, which is why DAC's codebooks stay alive without EMA updates. We add two
things DAC leaves out, both for small CPU runs where collapse shows up early:

* dead-code restart: an entry unused for a while is moved onto a random projected residual from the
  current batch (audiocraft and SoundStream do this for their EMA codebooks);
* live health: per-codebook usage counts, from which training logs perplexity and dead codes.

Quantizer dropout (SoundStream): during training each item keeps a random number of stages, so one
model serves every bitrate from 1 to ``num_codebooks`` codebooks. ``num_codebooks=k`` at inference is
exactly the first ``k`` stages of the full encoding (the residual loop is sequential).

Layout: latents are ``[B, T, D]`` here (channels last, so the projections are plain ``nn.Linear``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class VectorQuantizer(nn.Module):
    """One factorized codebook: ``D -> codebook_dim -> nearest of codebook_size -> D``."""

    def __init__(self, input_dim: int, codebook_size: int, codebook_dim: int):
        super().__init__()
        self.codebook_size = codebook_size
        self.in_proj = nn.Linear(input_dim, codebook_dim)
        self.out_proj = nn.Linear(codebook_dim, input_dim)
        self.codebook = nn.Embedding(codebook_size, codebook_dim)
        # Steps since each entry was last chosen; drives dead-code restart. Not a parameter.
        self.register_buffer("idle_steps", torch.zeros(codebook_size, dtype=torch.long), persistent=True)

    def lookup(self, z_e: torch.Tensor) -> torch.Tensor:
        """Nearest entries by cosine similarity. z_e: ``[B, T, d]`` -> codes ``[B, T]``."""
        query = F.normalize(z_e, dim=-1)  # (B, T, d)
        entries = F.normalize(self.codebook.weight, dim=-1)  # (N, d)
        return (query @ entries.t()).argmax(dim=-1)  # (B, T)

    def forward(
        self, residual: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """residual ``[B, T, D]`` -> (quantized ``[B, T, D]``, codes ``[B, T]``, commit loss ``[B]``,
        codebook loss ``[B]``). The straight-through estimator passes gradients to the encoder."""
        z_e = self.in_proj(residual)  # (B, T, d)
        codes = self.lookup(z_e)
        z_q = self.codebook(codes)  # (B, T, d)
        commit = F.mse_loss(z_e, z_q.detach(), reduction="none").mean(dim=(1, 2))
        codebook = F.mse_loss(z_q, z_e.detach(), reduction="none").mean(dim=(1, 2))
        z_q = z_e + (z_q - z_e).detach()
        return self.out_proj(z_q), codes, commit, codebook

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """codes ``[B, T]`` -> quantized latents ``[B, T, D]``."""
        return self.out_proj(self.codebook(codes))

    @torch.no_grad()
    def restart_dead_codes(
        self, used: torch.Tensor, candidates: torch.Tensor, max_idle: int, generator: torch.Generator
    ) -> int:
        """Move entries idle for more than ``max_idle`` steps onto random rows of ``candidates``
        (``[N, d]`` projected residuals of this step). ``used``: bool ``[codebook_size]``. Returns the
        number of entries restarted."""
        weight = self.codebook.weight
        self.idle_steps += 1
        self.idle_steps[used.to(weight.device)] = 0
        dead = (self.idle_steps > max_idle).nonzero().flatten()
        if dead.numel() == 0 or candidates.shape[0] == 0:
            return 0
        # The draw is on the CPU generator, so a run picks the same rows on any device.
        pick = torch.randint(0, candidates.shape[0], (dead.numel(),), generator=generator)
        weight.data[dead] = candidates[pick.to(candidates.device)].to(weight.device, weight.dtype)
        self.idle_steps[dead] = 0
        return int(dead.numel())


@dataclass
class RVQOutput:
    """What the residual quantizer returns in training and inference."""

    quantized: torch.Tensor  # [B, T, D] sum of the kept stages
    codes: torch.Tensor  # [B, K, T] (K = stages run; dropped stages of an item still hold codes)
    commit_loss: torch.Tensor  # scalar
    codebook_loss: torch.Tensor  # scalar
    kept: torch.Tensor  # [B] stages kept per item (quantizer dropout)


class ResidualVectorQuantizer(nn.Module):
    def __init__(
        self,
        input_dim: int,
        num_codebooks: int,
        codebook_size: int,
        codebook_dim: int,
        quantizer_dropout: float = 0.5,
    ):
        super().__init__()
        self.num_codebooks = num_codebooks
        self.codebook_size = codebook_size
        self.quantizer_dropout = quantizer_dropout
        # Relative odds of each stage count 1..K for an item that quantizer dropout draws (None: uniform).
        # A training choice, not part of the model: the trainer sets it (train.quantizer_dropout_weights);
        # a buffer so it follows the module's device, non-persistent so no state dict carries it.
        self.register_buffer("dropout_weights", None, persistent=False)
        self.stages = nn.ModuleList(
            [VectorQuantizer(input_dim, codebook_size, codebook_dim) for _ in range(num_codebooks)]
        )

    def forward(self, latents: torch.Tensor, num_codebooks: int | None = None) -> RVQOutput:
        """latents ``[B, T, D]``. In training, quantizer dropout draws each item's stage count from
        the global torch RNG (seeded per step by the trainer, so runs resume exactly)."""
        B = latents.shape[0]
        k = num_codebooks or self.num_codebooks
        if not 1 <= k <= self.num_codebooks:
            raise ValueError(f"num_codebooks must be in [1, {self.num_codebooks}], got {k}")
        kept = torch.full((B,), k, dtype=torch.long, device=latents.device)
        if self.training and self.quantizer_dropout > 0:
            drop = torch.rand(B, device=latents.device) < self.quantizer_dropout
            if self.dropout_weights is None:
                drawn = torch.randint(1, k + 1, (B,), device=latents.device)
            else:
                drawn = torch.multinomial(self.dropout_weights[:k], B, replacement=True) + 1
            kept = torch.where(drop, drawn, kept)

        residual = latents
        quantized = torch.zeros_like(latents)
        codes, commit, codebook = [], latents.new_zeros(B), latents.new_zeros(B)
        for i, stage in enumerate(self.stages[:k]):
            z_q, c, l_commit, l_codebook = stage(residual)
            keep = (i < kept).to(latents.dtype)  # (B,)
            quantized = quantized + z_q * keep[:, None, None]
            residual = residual - z_q
            codes.append(c)
            commit = commit + l_commit * keep
            codebook = codebook + l_codebook * keep
        return RVQOutput(
            quantized=quantized,
            codes=torch.stack(codes, dim=1),  # (B, K, T)
            commit_loss=commit.mean(),
            codebook_loss=codebook.mean(),
            kept=kept,
        )

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """codes ``[B, K, T]`` (any K <= num_codebooks) -> latents ``[B, T, D]``."""
        if codes.shape[1] > self.num_codebooks:
            raise ValueError(f"got {codes.shape[1]} codebooks, this quantizer has {self.num_codebooks}")
        out = None
        for i in range(codes.shape[1]):
            z = self.stages[i].decode_codes(codes[:, i])
            out = z if out is None else out + z
        return out


class LibraryResidualVQ(nn.Module):
    """vector-quantize-pytorch's ``ResidualVQ`` (EMA codebooks, k-means init, dead-code expiry, as in
    SoundStream/EnCodec) behind the same interface, so the two quantizers can be compared in one
    benchmark (bench/quantizer_choice.py). Its quantizer dropout draws one stage count per batch,
    not per item."""

    def __init__(
        self,
        input_dim: int,
        num_codebooks: int,
        codebook_size: int,
        codebook_dim: int,
        quantizer_dropout: float,
    ):
        super().__init__()
        from vector_quantize_pytorch import ResidualVQ

        self.num_codebooks = num_codebooks
        self.codebook_size = codebook_size
        self.rvq = ResidualVQ(
            dim=input_dim,
            num_quantizers=num_codebooks,
            codebook_size=codebook_size,
            codebook_dim=codebook_dim,
            kmeans_init=True,
            kmeans_iters=10,
            decay=0.99,
            threshold_ema_dead_code=2,
            commitment_weight=1.0,
            quantize_dropout=quantizer_dropout > 0,
        )

    def forward(self, latents: torch.Tensor, num_codebooks: int | None = None) -> RVQOutput:
        k = num_codebooks or self.num_codebooks
        quantized, indices, commit = self.rvq(latents)  # (B, T, D), (B, T, K) with -1 for dropped stages
        codes = indices.permute(0, 2, 1)[:, :k]  # (B, k, T)
        if k < self.num_codebooks:
            quantized = self.decode_codes(codes.clamp(min=0))
        kept = (codes >= 0).all(dim=2).sum(dim=1)
        return RVQOutput(quantized, codes.clamp(min=0), commit.sum(), latents.new_zeros(()), kept)

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """codes ``[B, k, T]`` -> latents ``[B, T, D]`` (stages past k are masked with -1)."""
        B, k, T = codes.shape
        full = codes.new_full((B, self.num_codebooks, T), -1)
        full[:, :k] = codes
        return self.rvq.get_output_from_indices(full.permute(0, 2, 1))
