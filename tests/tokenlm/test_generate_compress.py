"""Generation and LM compression: a trained tiny LM continues its learned stream, seeded runs repeat,
batched prompts equal single ones, compress/decompress is bit-exact, and a wrong LM, a truncated and a
corrupt file are each refused with one clear error and nothing written. The CLI runs them end to end."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from stores import learnable_codes, make_store

import audiotok.cli as audiotok_cli
from codec.store import store_items_equal
from tokenlm.compress import CompressError, compress_store, decompress_file
from tokenlm.generate import Sampling, generate, sample
from tokenlm.model import LMConfig, TokenLM
from tokenlm.train import load_config, train

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "codec"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    root = tmp_path_factory.mktemp("lm")
    store = make_store(root / "store", items=16, frames=40)
    model_cfg, cfg = load_config(ROOT / "configs" / "tokenlm" / "tiny.yaml")
    cfg = replace(cfg, steps=60, eval_every=60, log_every=60, ckpt_every=60)
    return train(model_cfg, cfg, [str(store)], root / "run", quiet=True)


def test_generation_continues_the_learned_stream(trained):
    lm = TokenLM.from_pretrained(trained)
    prompt = torch.from_numpy(learnable_codes(12, 3, 16, seed=5))
    out = generate(lm, [prompt], 10, Sampling(temperature=0))[0]
    assert torch.equal(out[:, :12], prompt)  # the prompt is kept as it was
    assert torch.equal(out, torch.from_numpy(learnable_codes(22, 3, 16, seed=5)))


def test_seeded_sampling_repeats_and_batches_equal_single_prompts(trained):
    lm = TokenLM.from_pretrained(trained)
    a, b = (torch.from_numpy(learnable_codes(n, 3, 16, seed=s)) for n, s in ((8, 1), (3, 2)))
    hot = Sampling(temperature=1.5, top_k=8, top_p=0.9, seed=7)
    first = generate(lm, [a, b], 6, hot)
    again = generate(lm, [a, b], 6, hot)
    assert all(torch.equal(x, y) for x, y in zip(first, again))
    assert [tuple(x.shape) for x in first] == [(3, 14), (3, 9)]
    greedy = Sampling(temperature=0)
    batched = generate(lm, [a, b], 6, greedy)
    assert torch.equal(batched[0], generate(lm, [a], 6, greedy)[0])
    assert torch.equal(batched[1][:, :9], generate(lm, [b], 6, greedy)[0])


def test_the_sampler_draws_from_the_filtered_distribution():
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0]).log_softmax(-1).expand(40000, 5)
    g = torch.Generator().manual_seed(0)

    def freq(sampling: Sampling) -> torch.Tensor:
        codes = sample(logits, sampling, torch.empty(logits.shape).exponential_(generator=g))
        return torch.bincount(codes, minlength=5).float() / len(codes)

    p = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0]).softmax(-1)
    torch.testing.assert_close(freq(Sampling(seed=None)), p, atol=0.01, rtol=0)
    top2 = torch.cat([p[:2] / p[:2].sum(), torch.zeros(3)])
    torch.testing.assert_close(freq(Sampling(top_k=2, seed=None)), top2, atol=0.01, rtol=0)
    assert freq(Sampling(top_p=0.5, seed=None)).tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]  # p[0] = 0.53
    assert sample(logits[:3], Sampling(temperature=0), None).tolist() == [0, 0, 0]


def test_generation_past_the_context_is_one_clear_error(trained):
    lm = TokenLM.from_pretrained(trained)
    with pytest.raises(ValueError, match="the LM's context holds 128"):
        generate(lm, [torch.zeros(3, 0, dtype=torch.long)], 500)


def test_compress_decompress_is_bit_exact(trained, tmp_path):
    lm = TokenLM.from_pretrained(trained)
    # learnable and random items, an empty one, and a 4th codebook the LM does not model (coded uniformly)
    store = make_store(tmp_path / "store", frames=[30, 0, 7, 50, 1], num_codebooks=4)
    stats = compress_store(lm, store, tmp_path / "x.lmz")
    back = decompress_file(lm, tmp_path / "x.lmz", tmp_path / "back")
    assert store_items_equal(store, tmp_path / "back") == []
    assert stats.coded_bits == back.coded_bits and stats.coded_bits < 0.6 * stats.raw_bits
    noisy = make_store(tmp_path / "noisy", items=3, frames=30, random=True)
    compress_store(lm, noisy, tmp_path / "n.lmz")
    decompress_file(lm, tmp_path / "n.lmz", tmp_path / "nback")
    assert store_items_equal(noisy, tmp_path / "nback") == []


def test_wrong_lm_truncated_and_corrupt_files_are_refused(trained, tmp_path):
    lm = TokenLM.from_pretrained(trained)
    store = make_store(tmp_path / "store", items=3, frames=20)
    compress_store(lm, store, tmp_path / "x.lmz")
    data = (tmp_path / "x.lmz").read_bytes()
    other = TokenLM.build(replace(lm.config), lm.meta)  # same shape, other weights
    with pytest.raises(CompressError, match="compressed with another LM"):
        decompress_file(other, tmp_path / "x.lmz", tmp_path / "out")
    (tmp_path / "t.lmz").write_bytes(data[:-9])
    with pytest.raises(CompressError, match="truncated"):
        decompress_file(lm, tmp_path / "t.lmz", tmp_path / "out")
    corrupt = bytearray(data)
    corrupt[-8] ^= 0x40
    (tmp_path / "c.lmz").write_bytes(bytes(corrupt))
    with pytest.raises(CompressError, match="corrupt"):
        decompress_file(lm, tmp_path / "c.lmz", tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
    wrong_codec = make_store(tmp_path / "other", items=2, codec_id="other-16k@111111111111")
    with pytest.raises(CompressError, match="holds tokens of codec other-16k"):
        compress_store(lm, wrong_codec, tmp_path / "o.lmz")


def test_cli_generate_compress_decompress(tmp_path, capsys):
    """End to end through `audiotok lm` with a tiny random codec saved locally and an LM on its codes."""
    from tiny import tiny_config

    from codec.nn.model import AudiotokCodec, CodecModel

    torch.manual_seed(0)
    codec = AudiotokCodec(CodecModel(tiny_config()))
    codec.save_pretrained(tmp_path / "codec")
    t = np.arange(8000) / 16000
    sf.write(tmp_path / "tone.wav", 0.3 * np.sin(2 * np.pi * 330 * t), 16000)
    cfg = LMConfig(pattern="delay", num_codebooks=4, codebook_size=64, hidden_size=32, num_layers=1,
                   num_heads=2, num_kv_heads=2, intermediate_size=64, max_steps=256)  # fmt: skip
    lm = TokenLM.build(
        cfg, {"codec_id": codec.codec_id, "codec": str(tmp_path / "codec"), "frame_rate": 50.0}
    )
    lm.save_pretrained(tmp_path / "lm")
    out = tmp_path / "out.wav"
    argv = ["lm", "generate", "--lm", str(tmp_path / "lm"), "--prompt", str(tmp_path / "tone.wav"),
            "--seconds", "0.4", "-o", str(out), "--json"]  # fmt: skip
    assert audiotok_cli.main(argv) == 0
    written = json.loads(capsys.readouterr().out)[0]
    assert written["prompt_seconds"] == pytest.approx(0.5) and written["seconds"] == pytest.approx(0.9)
    assert sf.info(out).samplerate == 16000 and sf.info(out).duration == pytest.approx(0.9, abs=0.03)
    store = tmp_path / "store"
    assert audiotok_cli.main(["tokenize", str(tmp_path / "tone.wav"), "-o", str(store), "--codec",
                              str(tmp_path / "codec"), "--quiet"]) == 0  # fmt: skip
    lmz = tmp_path / "s.lmz"
    assert (
        audiotok_cli.main(
            ["lm", "compress", str(store), "-o", str(lmz), "--lm", str(tmp_path / "lm"), "--json"]
        )
        == 0
    )
    bits = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert bits["items"] == 1 and bits["raw_bits_per_second"] == pytest.approx(4 * 6 * 50)
    assert (
        audiotok_cli.main(
            ["lm", "decompress", str(lmz), "-o", str(tmp_path / "back"), "--lm", str(tmp_path / "lm")]
        )
        == 0
    )
    assert store_items_equal(store, tmp_path / "back") == []
    # bad input: one line, exit status 2
    assert audiotok_cli.main(["lm", "decompress", str(tmp_path / "tone.wav"), "-o", str(tmp_path / "x"),
                              "--lm", str(tmp_path / "lm")]) == 2  # fmt: skip
    assert "not an audiotok .lmz file" in capsys.readouterr().err
    assert audiotok_cli.main(["lm", "compress", str(store), "-o", str(lmz), "--lm", str(tmp_path)]) == 2
    assert "no token LM here" in capsys.readouterr().err


def test_a_depth_head_lm_trains_generates_and_compresses_bit_exactly(tmp_path):
    store = make_store(tmp_path / "store", items=10, frames=30)
    model_cfg, cfg = load_config(ROOT / "configs" / "tokenlm" / "tiny.yaml")
    model_cfg = replace(model_cfg, pattern="parallel", depth_layers=1, depth_hidden=32)
    export = train(model_cfg, replace(cfg, steps=4), [str(store)], tmp_path / "run", quiet=True)
    lm = TokenLM.from_pretrained(export)
    assert lm.has_depth
    prompt = torch.from_numpy(learnable_codes(5, 3, 16, seed=3))
    out = generate(lm, [prompt, prompt[:, :2]], 4, Sampling(seed=1))
    assert [tuple(o.shape) for o in out] == [(3, 9), (3, 6)] and torch.equal(out[0][:, :5], prompt)
    small = make_store(tmp_path / "small", frames=[12, 3], num_codebooks=3)
    compress_store(lm, small, tmp_path / "d.lmz")
    decompress_file(lm, tmp_path / "d.lmz", tmp_path / "back")
    assert store_items_equal(small, tmp_path / "back") == []


@pytest.mark.slow
def test_compiled_decode_generates_what_the_eager_one_does(trained):
    lm = TokenLM.from_pretrained(trained)
    prompt = torch.from_numpy(learnable_codes(6, 3, 16, seed=4))
    eager = generate(lm, [prompt, prompt[:, :3]], 5, Sampling(temperature=0))
    compiled = generate(lm, [prompt, prompt[:, :3]], 5, Sampling(temperature=0), compiled=True)
    assert all(torch.equal(a, b) for a, b in zip(eager, compiled))
    hot = Sampling(temperature=1.5, top_k=8, top_p=0.9, seed=7)  # the sampler is in the compiled step
    torch.manual_seed(0)
    flat = TokenLM.build(LMConfig(pattern="flatten", num_codebooks=3, codebook_size=16, hidden_size=32,
                                  num_layers=1, num_heads=2, num_kv_heads=2, intermediate_size=64, max_steps=64)).eval()  # fmt: skip
    for model in (lm, flat):  # multi-stream heads, and a one-stream head read block by block
        eager = generate(model, [prompt, prompt[:, :3]], 5, hot)
        compiled = generate(model, [prompt, prompt[:, :3]], 5, hot, compiled=True)
        assert all(torch.equal(a, b) for a, b in zip(eager, compiled))
