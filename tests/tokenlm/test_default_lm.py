"""The shipped token LM (tokenlm/weights/default): it loads offline, fits the size budget, models the
shipped codec's tokens, continues a bundled clip, and compresses its tokens losslessly with fewer bits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from codec import TokenStore, load_audio, load_codec
from codec.store import StoreMeta, store_items_equal
from tokenlm.cli import DEFAULT_LM, load_lm
from tokenlm.compress import compress_store, decompress_file
from tokenlm.generate import Sampling, generate

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lm():
    return load_lm("default")


def test_shipped_lm_is_small_fp16_and_models_the_shipped_codec(lm):
    from safetensors import safe_open

    weights = DEFAULT_LM / "model.safetensors"
    assert weights.stat().st_size <= 25e6 and (DEFAULT_LM / "RECIPE.md").is_file()
    with safe_open(str(weights), framework="pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    assert lm.meta["codec_id"] == load_codec("default").codec_id
    assert lm.config.num_codebooks == 12 and lm.meta["trained_steps"] > 0


def test_shipped_lm_continues_a_bundled_clip(lm):
    codec = load_codec("default")
    audio = load_audio(ROOT / "examples" / "speech.wav", target_sr=codec.sample_rate)
    prompt = codec.encode(audio.wav[None], codec.sample_rate).item(0)[:, :50]  # the first second
    out = generate(lm, [prompt], 10, Sampling(temperature=1.0, top_k=50, seed=0))[0]
    assert out.shape == (12, 60) and torch.equal(out[:, :50], prompt)
    assert out.min() >= 0 and out.max() < codec.codebook_size
    again = generate(lm, [prompt], 10, Sampling(temperature=1.0, top_k=50, seed=0))[0]
    assert torch.equal(out, again)


def test_shipped_lm_compresses_the_bundled_speech_losslessly(lm, tmp_path):
    codec = load_codec("default")
    meta = StoreMeta(codec_id=codec.codec_id, sample_rate=codec.sample_rate, frame_rate=codec.frame_rate,
                     num_codebooks=12, codebook_size=codec.codebook_size, codec="default")  # fmt: skip
    audio = load_audio(ROOT / "examples" / "speech.wav", target_sr=codec.sample_rate)
    with TokenStore.create(tmp_path / "store", meta) as store:
        store.append("speech", codec.encode(audio.wav[None], codec.sample_rate).item(0)[:, :100], seconds=2.0)
    stats = compress_store(lm, tmp_path / "store", tmp_path / "s.lmz")
    decompress_file(lm, tmp_path / "s.lmz", tmp_path / "back")
    assert store_items_equal(tmp_path / "store", tmp_path / "back") == []
    assert stats.coded_bits < 0.97 * stats.raw_bits  # 2 s of speech the LM never saw: 5% fewer bits than raw
