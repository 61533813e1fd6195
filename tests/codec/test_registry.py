"""load_codec / list_codecs (codec/registry.py): each accepted form resolves, everything else is a clear
ValueError. Tiny random HF models are saved locally; the hub is never contacted (HF_HUB_OFFLINE)."""

from __future__ import annotations

import json

import pytest
import torch

from codec import registry
from codec.pretrained import HFCodec, save_tiny_random_model
from codec.registry import list_codecs, load_codec
from codec.tokens import Codec


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A folder holding tiny random encodec and dac models."""
    root = tmp_path_factory.mktemp("codecs")
    for kind in ("encodec", "dac"):
        save_tiny_random_model(kind, root / kind)
    return root


@pytest.fixture
def weights_dir(tmp_path, monkeypatch):
    """An empty stand-in for codec/weights/."""
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setattr(registry, "WEIGHTS_DIR", folder)
    return folder


def test_hf_folder_loads_through_the_adapter(models):
    for kind in ("encodec", "dac"):
        codec = load_codec(models / kind)
        assert isinstance(codec, HFCodec) and isinstance(codec, Codec)
        assert codec.codec_id == HFCodec.from_pretrained(models / kind).codec_id
        assert codec.codec_id.startswith(f"hf-{kind}:{kind}@")
        tokens = codec.encode(torch.randn(1, 800) * 0.1, 16000, num_codebooks=2)
        assert tokens.num_codebooks == 2
    assert isinstance(load_codec(str(models / "dac")), HFCodec)  # str and Path alike


def test_audiotok_folder_goes_to_our_codec(tmp_path, monkeypatch):
    model = pytest.importorskip("codec.nn.model")
    calls = []

    def fake_from_pretrained(path, device="cpu"):
        calls.append((path, device))
        return "our codec"

    monkeypatch.setattr(model.AudiotokCodec, "from_pretrained", staticmethod(fake_from_pretrained))
    (tmp_path / "config.json").write_text(json.dumps({"format": "audiotok-codec"}))
    assert load_codec(tmp_path, device="meta") == "our codec"
    assert calls == [(tmp_path, "meta")]


def test_default_and_shipped_names(weights_dir, monkeypatch, models):
    model = pytest.importorskip("codec.nn.model")
    monkeypatch.setattr(model.AudiotokCodec, "from_pretrained", staticmethod(lambda path, device="cpu": path))
    (weights_dir / "default").mkdir()
    (weights_dir / "default" / "config.json").write_text(json.dumps({"format": "audiotok-codec"}))
    assert load_codec() == weights_dir / "default"
    assert load_codec("default") == weights_dir / "default"
    save_tiny_random_model("encodec", weights_dir / "tiny-encodec")
    assert isinstance(load_codec("tiny-encodec"), HFCodec)
    assert list_codecs() == ["default", "tiny-encodec"]
    assert list_codecs([models]) == ["default", "tiny-encodec", str(models / "dac"), str(models / "encodec")]
    assert list_codecs([models / "dac"])[-1] == str(models / "dac")


def test_missing_default_is_a_clear_error(weights_dir):
    with pytest.raises(ValueError, match="default codec is missing"):
        load_codec()
    assert list_codecs() == []


def test_shipped_default_loads():
    assert registry.codec_kind(registry.WEIGHTS_DIR / "default") is not None
    codec = load_codec()
    assert isinstance(codec, Codec)
    assert list_codecs()[0] == "default"


@pytest.mark.parametrize(
    "name, message",
    [
        ("no-such-codec", "unknown codec"),
        ("./not/here", "unknown codec"),
    ],
)
def test_unknown_names_list_the_accepted_forms(weights_dir, name, message):
    with pytest.raises(ValueError, match=message) as err:
        load_codec(name)
    if message == "unknown codec":
        assert "Accepted" in str(err.value) and "hub id" in str(err.value)


def test_hub_ids_go_to_the_adapter_without_network(weights_dir, monkeypatch):
    calls = []

    def fake_from_pretrained(id_or_path, device="cpu"):
        calls.append((id_or_path, device))
        if id_or_path == "facebook/offline":
            raise OSError("we are offline")
        return "adapter"

    # never reach the hub: the adapter's loader is replaced
    monkeypatch.setattr(HFCodec, "from_pretrained", staticmethod(fake_from_pretrained))
    assert load_codec("facebook/encodec_24khz") == "adapter"
    assert calls == [("facebook/encodec_24khz", "cpu")]
    with pytest.raises(ValueError, match="could not load hub id 'facebook/offline'.*save_pretrained"):
        load_codec("facebook/offline")


def test_bad_folders(tmp_path):
    with pytest.raises(ValueError, match="no config.json"):
        load_codec(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="not a codec audiotok can load"):
        load_codec(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_codec(tmp_path)
    with pytest.raises(ValueError, match="is a file"):
        load_codec(tmp_path / "config.json")
