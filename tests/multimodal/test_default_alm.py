"""The shipped audio-language model: small, fp16, tied by hash to the token LM it was trained on (version 1,
pinned beside it), and it works from a clone."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from multimodal.api import DEFAULT_ALM, AudioLanguageModel
from tokenlm.cli import DEFAULT_LM

ROOT = Path(__file__).resolve().parents[2]
SCENE = ROOT / "examples" / "alm" / "scene.wav"


@pytest.fixture(scope="module")
def alm() -> AudioLanguageModel:
    return AudioLanguageModel.from_pretrained("default")


def test_the_shipped_files_are_small_fp16_and_name_their_token_lm():
    names = {p.name for p in DEFAULT_ALM.iterdir()}
    assert {"config.json", "model.safetensors", "text.model", "vocab.json", "RECIPE.md", "lm"} <= names
    assert sum(p.stat().st_size for p in DEFAULT_ALM.iterdir() if p.is_file()) < 25e6
    config = json.loads((DEFAULT_ALM / "config.json").read_text())
    # its encoder is the token LM it was trained on, pinned in lm/ (not the newer tokenlm default)
    lm_hash = hashlib.sha256((DEFAULT_ALM / "lm" / "model.safetensors").read_bytes()).hexdigest()
    assert config["encoder"] == {**config["encoder"], "lm": "lm", "lm_sha256": lm_hash}
    pinned = json.loads((DEFAULT_ALM / "lm" / "config.json").read_text())["audiotok"]
    assert pinned["codec_id"] == json.loads((DEFAULT_LM / "config.json").read_text())["audiotok"]["codec_id"]
    from safetensors import safe_open

    with safe_open(str(DEFAULT_ALM / "model.safetensors"), "pt") as f:
        assert {str(f.get_slice(k).get_dtype()) for k in f.keys()} == {"F16"}


def test_the_shipped_model_captions_answers_and_retrieves(alm):
    caption = alm.caption(SCENE)
    assert isinstance(caption, str) and len(caption.split()) >= 3
    answers = alm.ask([SCENE, SCENE], ["is there music?", "how many sounds are there?"])
    assert all(isinstance(a, str) and a for a in answers)
    ranked = alm.retrieve(SCENE, ["a violin plays, glass breaks and a woman says a word", "silence"])
    assert len(ranked) == 2
