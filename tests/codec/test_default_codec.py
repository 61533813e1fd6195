"""The shipped default codec: it loads offline, meets the token-API guarantees, and uses its codebooks.

A residual quantizer whose later codebooks add nothing passes every shape test; these tests catch it:
quality must improve with every step up in bitrate, and every codebook must spread its usage.
(The same bitrate ordering on the corpus valid split is logged during training: see RECIPE.md.)
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from codec.audio import load_audio
from codec.model import AudiotokCodec, default_weights_dir
from codec.registry import load_codec
from eval.metrics import mel_distance

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.wav"))
CORPUS = ROOT / "data" / "corpus"  # built by `make data`; CI does not build it


@pytest.fixture(scope="module")
def codec() -> AudiotokCodec:
    assert (default_weights_dir() / "model.safetensors").is_file(), (
        "the default codec weights must ship in the repo"
    )
    return load_codec("default")


def test_default_codec_is_16k_mono_at_three_bitrates(codec):
    assert codec.sample_rate == 16000 and codec.channels == 1
    kbps = [k * math.log2(codec.codebook_size) * codec.frame_rate / 1000 for k in (3, 6, 12)]
    assert kbps == [1.5, 3.0, 6.0]
    assert codec.codec_id.startswith("audiotok-16k@")
    size_mb = (default_weights_dir() / "model.safetensors").stat().st_size / 1e6
    assert size_mb <= 20


def test_quality_improves_with_every_bitrate_step(codec):
    """Mean log-mel distance over the bundled clips (speech, music, sfx): all 12 codebooks < half < one.
    (Per kind, music gains little past 6 codebooks: see the quality table in BENCHMARKS.md.)"""
    clips = [load_audio(c, target_sr=16000) for c in EXAMPLES]
    means = []
    for k in (1, 6, 12):
        distances = []
        for audio in clips:
            decoded = codec.decode(codec.encode(audio.wav, 16000, num_codebooks=k))[0, 0, : audio.num_samples]
            distances.append(mel_distance(audio.wav[0], decoded))
        means.append(sum(distances) / len(distances))
    assert means[2] < means[1] < means[0], means


@pytest.mark.slow
@pytest.mark.skipif(
    not (CORPUS / "READY_ALL").is_file(), reason="needs the whole corpus in data/corpus: run `make data`"
)
def test_quality_improves_with_every_bitrate_step_on_the_valid_split():
    """The trainer's validation figure (multi-resolution log-mel L1 on the 16 fixed 3 s valid segments that
    bench/valid_mel.py scores every stage on): 12 codebooks < 6 < 3 < 1."""
    from dataclasses import replace

    from codec.losses import MultiResolutionMelLoss
    from codec.train import TrainConfig, evaluate, validation_batch

    model = load_codec("default").model  # its own copy: evaluate() leaves the model in train mode
    segments = validation_batch(model.config, replace(TrainConfig(), data_dir=str(CORPUS)))
    with torch.no_grad():
        figures = evaluate(model, segments, MultiResolutionMelLoss(model.config.sample_rate))
    by_k = [figures[f"valid/mel_k{k}"] for k in (12, 6, 3, 1)]
    assert by_k == sorted(by_k) and len(set(by_k)) == 4, figures


def test_every_codebook_is_used(codec):
    wav = torch.cat([load_audio(c, target_sr=16000).wav[0] for c in EXAMPLES])
    codes = codec.encode(wav, 16000).item(0)  # (K, T)
    for k in range(codes.shape[0]):
        p = torch.bincount(codes[k], minlength=codec.codebook_size).double() / codes.shape[1]
        perplexity = math.exp(-(p[p > 0] * p[p > 0].log()).sum().item())
        assert perplexity > 16, f"codebook {k} perplexity {perplexity:.1f}: the quantizer collapsed"


def test_recipe_has_one_section_per_stage_and_the_shipped_totals():
    """RECIPE.md says how the shipped weights were made: stage 1 at the top, then one section per later
    stage in order (none repeated), the last naming these weights and the trained_steps of config.json."""
    import json
    import re

    folder = default_weights_dir()
    config = json.loads((folder / "config.json").read_text())
    recipe = (folder / "RECIPE.md").read_text()
    stages = [int(n) for n in re.findall(r"^## Stage (\d+):", recipe, flags=re.M)]
    assert stages == list(range(2, len(config["stages"]) + 1))
    last = recipe[recipe.rindex("## Stage ") :]
    assert load_codec("default").codec_id in last.splitlines()[0]
    totals = re.findall(r"`trained_steps` \((\d+) in all\)", last)
    assert totals == [str(config["trained_steps"])]
