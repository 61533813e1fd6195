"""A codec config small enough for unit tests (a few milliseconds per forward pass)."""

from __future__ import annotations

from codec.nn.model import CodecConfig


def tiny_config(**overrides) -> CodecConfig:
    values = dict(
        n_fft=640,
        encoder_dim=32,
        encoder_layers=2,
        decoder_dim=32,
        decoder_layers=2,
        mlp_ratio=2,
        kernel_size=5,
        latent_dim=32,
        num_codebooks=4,
        codebook_size=64,
        codebook_dim=4,
    )
    values.update(overrides)
    return CodecConfig(**values)
