"""The HF adapters (codec/pretrained.py) on tiny random EnCodec, DAC and Mimi models saved locally.

Each guarantee of the Codec protocol is checked for every family: an item's codes do not depend on its
batch-mates or padding, ``num_codebooks=k`` gives the first k codebooks, decode has the right shape and
zeros past each item, and codec_id survives save/load. No network: HF_HUB_OFFLINE is set.
"""

from __future__ import annotations

import math

import pytest
import torch

from codec.pretrained import HFCodec, save_tiny_random_model, weights_sha256
from codec.tokens import PAD_CODE, AudioTokens, Codec

KINDS = ["encodec", "dac", "mimi"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module", params=KINDS)
def saved(request, tmp_path_factory):
    """(kind, folder) of a tiny random model written by save_pretrained."""
    folder = tmp_path_factory.mktemp("hf") / f"tiny-{request.param}"
    return request.param, save_tiny_random_model(request.param, folder)


@pytest.fixture(scope="module")
def codec(saved):
    return HFCodec.from_pretrained(saved[1])


def _audio(batch: int = 3, samples: int = 1600, seed: int = 0) -> torch.Tensor:
    """A chirp plus noise per item, ``[B, 1, S]``; items differ."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(samples) / 16000
    rows = [0.4 * torch.sin(2 * math.pi * (200 + 300 * b) * t * (1 + t)) for b in range(batch)]
    return (torch.stack(rows)[:, None] + 0.05 * torch.randn(batch, 1, samples, generator=gen)).float()


def test_attributes_follow_the_protocol(codec, saved):
    assert isinstance(codec, Codec)
    assert codec.family == saved[0]
    assert codec.codec_id.startswith(f"hf-{saved[0]}:tiny-{saved[0]}@")
    assert (codec.sample_rate, codec.channels, codec.num_codebooks, codec.codebook_size) == (16000, 1, 4, 64)
    assert codec.frame_rate == pytest.approx(codec.sample_rate / codec.hop_length)


def test_padded_batch_equals_each_item_alone(codec):
    wav = _audio()
    lengths = torch.tensor([1600, 1000, 517])
    padded = wav.clone()
    for b, n in enumerate(lengths.tolist()):
        padded[b, :, n:] = 7.0  # garbage in the padding must not leak into any item
    tokens = codec.encode(padded, 16000, lengths=lengths)
    assert tokens.codes.dtype == torch.long and tokens.codes.shape[:2] == (3, 4)
    for b, n in enumerate(lengths.tolist()):
        alone = codec.encode(wav[b, :, :n], 16000)
        assert torch.equal(tokens.item(b), alone.item(0))
        assert int(tokens.lengths[b]) == math.ceil(n / codec.hop_length)
        assert (tokens.codes[b, :, int(tokens.lengths[b]) :] == PAD_CODE).all()
    assert tokens.codes[0].unique().numel() > 4  # random codebooks do spread the codes


def test_first_k_codebooks(codec):
    wav = _audio(batch=2)
    full = codec.encode(wav, 16000)
    for k in range(1, codec.num_codebooks + 1):
        assert torch.equal(codec.encode(wav, 16000, num_codebooks=k).codes, full.first_codebooks(k).codes)
    with pytest.raises(ValueError, match="num_codebooks"):
        codec.encode(wav, 16000, num_codebooks=codec.num_codebooks + 1)


def test_decode_shape_and_zeros_past_each_item(codec):
    wav = _audio()
    tokens = codec.encode(wav, 16000, lengths=torch.tensor([1600, 900, 333]))
    out = codec.decode(tokens)
    assert out.shape == (3, 1, int(tokens.lengths.max()) * codec.hop_length)
    assert torch.isfinite(out).all()
    for b in range(3):
        end = int(tokens.lengths[b]) * codec.hop_length
        assert (out[b, :, end:] == 0).all()
        assert out[b, :, :end].abs().sum() > 0
    # decoding fewer codebooks works and keeps the length
    assert codec.decode(tokens.first_codebooks(1)).shape == out.shape


def test_resampling_and_channel_mapping(codec):
    stereo_8k = _audio(batch=2, samples=800)[:, 0]  # [C=2, S] at 8 kHz, one item
    tokens = codec.encode(stereo_8k, 8000)
    assert tokens.batch_size == 1
    assert int(tokens.lengths[0]) == math.ceil(1600 / codec.hop_length)


def test_codec_id_stable_across_save_and_load(codec, saved, tmp_path):
    again = HFCodec.from_pretrained(saved[1])
    assert again.codec_id == codec.codec_id
    resaved = tmp_path / saved[1].name
    again.model.save_pretrained(resaved)
    assert HFCodec.from_pretrained(resaved).codec_id == codec.codec_id
    assert weights_sha256(again.model) == codec.weights_sha256
    if saved[0] != "mimi":  # transformers 5 renames Mimi's keys in the file; the loaded model's hash holds
        assert weights_sha256(resaved / "model.safetensors") == codec.weights_sha256
    # a different model gets a different hash
    other = save_tiny_random_model(saved[0], tmp_path / "other", seed=1)
    assert HFCodec.from_pretrained(other).weights_sha256 != codec.weights_sha256


def test_decode_refuses_foreign_or_bad_tokens(codec):
    tokens = codec.encode(_audio(batch=1), 16000)
    foreign = AudioTokens(
        tokens.codes, tokens.lengths, tokens.frame_rate, tokens.codebook_size, "other@0123abcd"
    )
    with pytest.raises(ValueError, match="made by"):
        codec.decode(foreign)
    bad = tokens.codes.clone()
    bad[0, 0, 0] = codec.codebook_size
    with pytest.raises(ValueError, match="outside"):
        codec.decode(
            AudioTokens(bad, tokens.lengths, tokens.frame_rate, tokens.codebook_size, tokens.codec_id)
        )


def test_bad_inputs_give_clear_errors(codec, tmp_path):
    with pytest.raises(ValueError, match="length"):
        codec.encode(torch.zeros(2, 1, 100), 16000, lengths=torch.tensor([100, 0]))
    with pytest.raises(ValueError, match="config.json"):
        HFCodec.from_pretrained(tmp_path)


def test_encodec_bandwidth_mapping(tmp_path):
    codec = HFCodec.from_pretrained(save_tiny_random_model("encodec", tmp_path / "enc"))
    # 1000 frames/s x 6 bits = 6 kbps per codebook; target bandwidths 6/12/24 kbps give 1/2/4 codebooks
    assert [codec.bandwidth_for(k) for k in (1, 2, 3, 4)] == [6.0, 12.0, 24.0, 24.0]


def test_encodec_with_chunking_is_refused(tmp_path):
    from transformers import EncodecConfig, EncodecModel

    config = EncodecConfig(
        sampling_rate=16000,
        hidden_size=16,
        num_filters=4,
        upsampling_ratios=[4, 4],
        codebook_size=64,
        target_bandwidths=[6.0],
        num_lstm_layers=1,
        chunk_length_s=0.5,
        overlap=0.01,
        normalize=True,
    )
    EncodecModel(config).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="scales"):
        HFCodec.from_pretrained(tmp_path)


def test_unsupported_model_type_is_refused(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ValueError, match="encodec, dac, mimi"):
        HFCodec.from_pretrained(tmp_path)


def test_loading_shows_no_progress_bars_and_restores_the_setting(tmp_path, capfd, monkeypatch):
    from transformers.utils import logging as hf_logging

    monkeypatch.setattr(hf_logging, "_tqdm_active", True)  # bars on, as in a default install
    path = save_tiny_random_model("encodec", tmp_path / "enc")
    HFCodec.from_pretrained(path)
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "Writing model shards" not in err
    assert hf_logging.is_progress_bar_enabled()  # only our loads are quiet
