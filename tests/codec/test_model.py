"""The audiotok codec: shapes, the token-API guarantees, streaming, save/load, configs."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from tiny import tiny_config

from codec.nn.model import AudiotokCodec, CodecConfig, CodecModel, ISTFTHead, StreamingEncoder
from codec.tokens import PAD_CODE, AudioTokens
from codec.train.config import load_config
from codec.train.losses import MultiResolutionDiscriminator
from codec.train.stages import initial_weights, quantizer_dropout_odds

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs" / "codec").rglob("*.yaml"))
RECIPE = sorted((ROOT / "configs" / "codec" / "recipe").glob("*.yaml"))
SHIPPED_MODEL = CodecConfig.from_dict(
    json.loads((ROOT / "codec" / "weights" / "default" / "config.json").read_text())["model"]
)


def tiny_codec(seed: int = 0, chunk_seconds: float = 30.0, **overrides) -> AudiotokCodec:
    torch.manual_seed(seed)
    return AudiotokCodec(CodecModel(tiny_config(**overrides)), chunk_seconds=chunk_seconds)


def chirp(seconds: float, sr: int = 16000, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * sr)) / sr
    return 0.4 * torch.sin(2 * math.pi * (100 + 900 * t) * t) + 0.05 * torch.randn(len(t), generator=g)


@pytest.mark.parametrize("head_upsample", [1, 2])
def test_encode_decode_shapes_and_dtypes(head_upsample):
    codec = tiny_codec(head_upsample=head_upsample)
    wav = chirp(1.03)
    tokens = codec.encode(wav, 16000)
    assert tokens.codes.dtype == torch.long and tokens.codes.shape == (1, 4, math.ceil(len(wav) / 320))
    assert tokens.frame_rate == 50.0 and tokens.codebook_size == 64
    assert int(tokens.codes.min()) >= 0 and int(tokens.codes.max()) < 64
    out = codec.decode(tokens)
    assert out.dtype == torch.float32 and out.shape == (1, 1, tokens.num_frames * 320)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("quantizer", ["factorized", "vqpytorch"])
def test_num_codebooks_gives_the_first_k(quantizer):
    codec = tiny_codec(quantizer=quantizer)
    full = codec.encode(chirp(0.8), 16000)
    for k in range(1, 5):
        assert torch.equal(codec.encode(chirp(0.8), 16000, num_codebooks=k).codes, full.codes[:, :k])
    with pytest.raises(ValueError, match="num_codebooks"):
        codec.encode(chirp(0.8), 16000, num_codebooks=5)


@pytest.mark.parametrize("head_upsample", [1, 2])
def test_batch_equals_single_item_despite_padding_garbage(head_upsample):
    codec = tiny_codec(head_upsample=head_upsample)
    a, b = chirp(0.5, seed=1), chirp(1.27, seed=2)
    batch = torch.full((2, 1, len(b)), 0.9)  # garbage in the padding must not leak
    batch[0, 0, : len(a)], batch[1, 0] = a, b
    tokens = codec.encode(batch, 16000, lengths=torch.tensor([len(a), len(b)]))
    assert torch.equal(tokens.item(0), codec.encode(a, 16000).item(0))
    assert torch.equal(tokens.item(1), codec.encode(b, 16000).item(0))
    assert (tokens.codes[0, :, tokens.lengths[0] :] == PAD_CODE).all()
    wavs = codec.decode(tokens)
    assert torch.allclose(wavs[0, :, : 25 * 320], codec.decode(codec.encode(a, 16000))[0], atol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_chunked_encoding_equals_one_pass(causal):
    whole = tiny_codec(chunk_seconds=1000, causal=causal)
    chunked = AudiotokCodec(whole.model, chunk_seconds=0.3)  # many chunk boundaries
    wav = chirp(4.1, seed=3)
    assert torch.equal(chunked.encode(wav, 16000).codes, whole.encode(wav, 16000).codes)


def test_streaming_encoder_equals_full_forward_for_causal_codec():
    codec = tiny_codec(causal=True)
    wav = chirp(2.3, seed=4)
    stream = StreamingEncoder(codec)
    pieces, i, sizes = [], 0, [100, 320, 1, 5000, 777, 3200]
    while i < len(wav):
        n = sizes[len(pieces) % len(sizes)]
        pieces.append(stream.push(wav[i : i + n]))
        i += n
    pieces.append(stream.flush())
    assert torch.equal(torch.cat(pieces, dim=-1), codec.encode(wav, 16000).item(0))


@pytest.mark.parametrize("causal", [False, True])
def test_finer_head_set_from_a_coarse_one_synthesises_a_steady_tone_alike(causal):
    """ISTFTHead.load_coarser: a coarse head whose every frame is the STFT of a 1050 Hz tone (21 cycles per
    hop, so every frame is the same) plays the tone; the head refined from it (40 ms frames every 10 ms
    instead of 80 ms every 20 ms) plays it too, at the same amplitude and phase."""
    n_fft, hop, sr, T = 1280, 320, 16000, 12
    coarse, fine = ISTFTHead(8, n_fft, hop, causal), ISTFTHead(8, n_fft, hop, causal, upsample=2)
    n = torch.arange(-coarse.left, n_fft - coarse.left, dtype=torch.float64)
    tone = lambda n: 0.3 * torch.cos(2 * math.pi * 1050 * n / sr + 0.7)  # noqa: E731
    spectrum = torch.fft.rfft(coarse.window.double() * tone(n))  # frame 0; every frame is the same
    with torch.no_grad():
        coarse.out.weight.zero_()
        coarse.out.bias.copy_(torch.cat([spectrum.abs().clamp(min=1e-9).log(), spectrum.angle()]).float())
    fine.load_coarser(coarse)
    x, mask = torch.zeros(1, T, 8), torch.ones(1, 1, T)
    inner = slice(n_fft, T * hop - n_fft)  # where every sample has its full overlap
    expected = tone(torch.arange(T * hop, dtype=torch.float64))[inner].float()
    with torch.no_grad():
        a, b = coarse(x, mask)[0, inner], fine(x, mask)[0, inner]
    assert torch.allclose(a, expected, atol=1e-4)
    assert torch.allclose(b, expected, atol=1e-3), (b - expected).abs().max()
    with pytest.raises(ValueError, match="one frame per codec frame"):
        coarse.load_coarser(fine)
    with pytest.raises(ValueError, match="divide"):
        ISTFTHead(8, n_fft, hop, causal, upsample=3)


def test_streaming_encoder_refuses_non_causal_codec():
    with pytest.raises(ValueError, match="causal"):
        StreamingEncoder(tiny_codec())


def test_resampling_and_stereo_downmix():
    codec = tiny_codec()
    wav = chirp(1.0)
    stereo8k = torch.stack([wav[::2], wav[::2]])  # (2, 8000) at 8 kHz
    tokens = codec.encode(stereo8k, 8000)
    assert tokens.lengths.tolist() == [50]


def test_save_load_round_trip_is_exact_in_fp16(tmp_path):
    codec = tiny_codec()
    codec.save_pretrained(tmp_path / "c")
    loaded = AudiotokCodec.from_pretrained(tmp_path / "c")
    assert loaded.codec_id == codec.codec_id
    # Saved weights are fp16; a model cast to fp16 and back encodes identically to the loaded one.
    for p in codec.model.parameters():
        p.data = p.data.half().float()
    wav = chirp(0.7)
    assert torch.equal(loaded.encode(wav, 16000).codes, codec.encode(wav, 16000).codes)


def test_load_rejects_foreign_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        AudiotokCodec.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"format": "something-else"}')
    with pytest.raises(ValueError, match="not an audiotok codec"):
        AudiotokCodec.from_pretrained(tmp_path)


def test_tokens_bits_per_second():
    codec = tiny_codec()
    tokens = codec.encode(chirp(0.5), 16000, num_codebooks=3)
    assert tokens.bits_per_second() == pytest.approx(3 * 6 * 50)
    assert isinstance(tokens, AudioTokens)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_codec_config_builds(path):
    model_cfg, train_cfg = load_config(path)
    model = CodecModel(model_cfg)
    wav = torch.zeros(1, model_cfg.hop_length * 8)
    out = model(wav)
    assert out.wav.shape == wav.shape
    assert train_cfg.batch_size > 0
    quantizer_dropout_odds(train_cfg.quantizer_dropout_weights, model_cfg)  # raises if they do not fit
    disc = MultiResolutionDiscriminator(
        tuple(train_cfg.disc_windows) or (256,),
        train_cfg.disc_channels,
        tuple(train_cfg.disc_periods),
        fp32=train_cfg.disc_fp32,
    )
    for logits, features in disc(torch.zeros(2, model_cfg.sample_rate // 4)):
        assert logits.shape[0] == 2 and len(features) >= 4
    # A fine-tuning config must match the export it starts from. The recipe's stages start from the
    # default as it was before them (the next test checks that chain); the stages of today's shape load
    # today's weights.
    in_recipe = "recipe" in path.relative_to(ROOT / "configs").parts
    if train_cfg.init_from and (not in_recipe or model_cfg == SHIPPED_MODEL):
        model.load_state_dict(
            initial_weights(ROOT / train_cfg.init_from, model_cfg, grow=train_cfg.init_grow)
        )


def test_the_recipe_chains_from_the_default_config_to_the_shipped_weights():
    """configs/codec/recipe/NN-*.yaml, in order, each start from the stage before (the default export as
    it then was) and change the model only where they grow it; the last one's model is the shipped one."""
    model_before, _ = load_config(ROOT / "configs" / "codec" / "default.yaml")
    assert [p.name[:2] for p in RECIPE] == [f"{n:02d}" for n in range(2, 2 + len(RECIPE))]
    for path in RECIPE:
        model_cfg, train_cfg = load_config(path)
        assert train_cfg.init_from == "codec/weights/default", path.name
        changed = {k for k in asdict(model_cfg) if getattr(model_cfg, k) != getattr(model_before, k)}
        assert changed <= ({"encoder_layers", "decoder_layers"} if train_cfg.init_grow else set()), path.name
        model_before = model_cfg
    assert model_before == SHIPPED_MODEL


def test_unknown_config_keys_are_an_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  encoder_dimm: 3\n")
    with pytest.raises(ValueError, match="encoder_dimm"):
        load_config(bad)


def test_unknown_quantizer_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown quantizer"):
        CodecModel(tiny_config(quantizer="magic"))


def test_encoding_runs_in_full_fp32_and_restores_the_settings(monkeypatch):
    codec = AudiotokCodec(
        CodecModel(CodecConfig(encoder_dim=32, decoder_dim=32, encoder_layers=1, decoder_layers=1))
    )
    seen = []
    original = codec.model.encode_latents

    def spy(*args, **kwargs):
        seen.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
        return original(*args, **kwargs)

    monkeypatch.setattr(codec.model, "encode_latents", spy)
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        codec.encode(torch.randn(1, 16000) * 0.1, 16000)
        assert seen and all(flags == (False, False) for flags in seen)
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_training_pass_under_bf16_autocast_quantizes_in_fp32():
    model = tiny_codec().model.train()
    seen: list[torch.dtype] = []
    model.quantizer.stages[0].in_proj.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        result = model(chirp(0.4)[None])
    assert seen == [torch.float32] and result.rvq.quantized.dtype == torch.float32
    assert result.wav.dtype == torch.float32 and torch.isfinite(result.wav).all()
    result.wav.pow(2).mean().backward()  # and the mixed-precision graph trains
    assert all(p.grad is not None for p in model.encoder.parameters() if p.requires_grad)


def test_quantizer_dropout_draws_stage_counts_with_the_given_odds():
    quantizer = CodecModel(tiny_config(num_codebooks=4, quantizer_dropout=1.0)).quantizer.train()
    latents = torch.randn(4000, 2, quantizer.stages[0].in_proj.in_features)
    torch.manual_seed(0)
    uniform = quantizer(latents).kept
    assert set(uniform.tolist()) == {1, 2, 3, 4}
    quantizer.dropout_weights = torch.tensor([0.0, 3.0, 0.0, 1.0])
    torch.manual_seed(0)
    kept = quantizer(latents).kept
    assert set(kept.tolist()) == {2, 4}
    assert 0.70 < float((kept == 2).float().mean()) < 0.80  # odds 3:1
    quantizer.eval()  # inference keeps every requested stage whatever the odds
    assert set(quantizer(latents[:8], num_codebooks=3).kept.tolist()) == {3}


@pytest.mark.parametrize("weights", [[1.0, 1.0], [1.0, -1.0, 1.0, 1.0], [0, 0, 0, 0]])
def test_bad_quantizer_dropout_weights_are_one_clear_error(weights):
    with pytest.raises(ValueError, match="quantizer_dropout_weights needs 4 odds"):
        quantizer_dropout_odds(weights, tiny_config(num_codebooks=4))
    assert quantizer_dropout_odds([], tiny_config(num_codebooks=4)) is None


def test_fp32_discriminators_ignore_a_bf16_autocast():
    torch.manual_seed(0)
    plain = MultiResolutionDiscriminator((256,), 4, (2, 3))
    fp32 = MultiResolutionDiscriminator((256,), 4, (2, 3), fp32=True)
    fp32.load_state_dict(plain.state_dict())
    wav = chirp(0.25)[None]
    reference = fp32(wav)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed, pinned = plain(wav), fp32(wav)
    assert any(logits.dtype == torch.bfloat16 for logits, _ in mixed)
    for (logits, features), (ref_logits, ref_features) in zip(pinned, reference):
        assert logits.dtype == torch.float32 and torch.equal(logits, ref_logits)
        assert all(torch.equal(a, b) for a, b in zip(features, ref_features))
