"""Representation probes (eval/probe.py) on a tiny synthetic paired set: tones of three pitches are the
classes of an "instrument" task, over noise, with a "gender" task too small to keep."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from eval.probe import run_probes, tasks, to_markdown
from eval.probe_features import Clip, Models, expand_features, features

SR = 16000
FREQS = {"low": 220.0, "mid": 880.0, "high": 3000.0}


def _write_set(root: Path) -> Path:
    """train: 8 clips per tone class and 2 speech clips; test: 4 per class. Each clip 0.6 s, the event
    0.1 .. 0.5 s over quiet noise."""
    rng = np.random.default_rng(0)
    for split, per_class in (("train", 8), ("test", 4)):
        rows = []
        (root / "audio" / split).mkdir(parents=True)
        for label, freq in FREQS.items():
            for i in range(per_class):
                t = np.arange(int(0.4 * SR)) / SR
                wav = 0.01 * rng.standard_normal(int(0.6 * SR))
                wav[int(0.1 * SR) : int(0.5 * SR)] += 0.3 * np.sin(2 * np.pi * freq * (1 + 0.02 * i) * t)
                path = f"audio/{split}/{label}-{i}.wav"
                sf.write(root / path, wav.astype(np.float32), SR)
                source = f"synth:{split}:{label}:{i}"
                event = {"kind": "music", "start": 0.1, "end": 0.5, "source": source, "instrument": label}
                rows.append({"id": f"{label}-{i}", "path": path, "kind": "scene", "sources": [source], "events": [event]})  # fmt: skip
        for i in range(2):  # two speech events: the gender task has too few examples
            event = {"kind": "speech", "start": 0.0, "end": 0.3, "source": f"s{i}", "gender": "female"}
            rows.append({"id": f"s{i}", "path": f"audio/{split}/low-0.wav", "kind": "scene", "events": [event]})  # fmt: skip
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.fixture(scope="module")
def paired(tmp_path_factory) -> Path:
    return _write_set(tmp_path_factory.mktemp("alm"))


def test_tasks_and_dropped_task(paired):
    found = tasks(paired, ["instrument", "gender"])
    instrument = found["instrument"]
    assert instrument.reason is None and instrument.classes == ["high", "low", "mid"]
    assert (len(instrument.train), len(instrument.test)) == (24, 12)
    assert found["gender"].reason and "train examples" in found["gender"].reason
    assert found["gender"].dropped_classes == {"female": 2}
    assert tasks(paired, ["instrument"], max_train=5)["instrument"].train == tasks(paired, ["instrument"], max_train=5)["instrument"].train  # fmt: skip
    with pytest.raises(ValueError, match="unknown task"):
        tasks(paired, ["colour"])


def test_probe_separates_tones_and_is_deterministic(paired, tmp_path):
    found = tasks(paired, ["instrument", "gender"])
    first = run_probes(paired, ["logmel", "alm"], found, tmp_path / "a", Models(alm=tmp_path / "no-alm"))
    again = run_probes(paired, ["logmel", "alm"], found, tmp_path / "b", Models(alm=tmp_path / "no-alm"))
    cached = run_probes(paired, ["logmel", "alm"], found, tmp_path / "a", Models(alm=tmp_path / "no-alm"))
    acc = first["results"]["instrument"]["logmel"]
    assert acc["linear"] > 0.9 and acc["mlp"] > 0.9
    assert first["results"] == again["results"] == cached["results"]
    assert "gender" in first["dropped_tasks"] and "alm" in first["skipped_features"]
    assert first["tasks"]["instrument"]["chance"] == pytest.approx(1 / 3)
    table = to_markdown(first)
    assert "| instrument |" in table and "task gender dropped" in table


def test_feature_shapes(paired):
    models = Models()
    names = expand_features(["logmel", "codec-latents", "codec-tokens", "lm"], models)
    layers = models.lm.config.num_layers
    assert [n for n in names if n.startswith("lm-layer-")] == [f"lm-layer-{i}" for i in range(layers + 1)]
    clips = [
        Clip(paired / "audio/train/low-0.wav", 0.1, 0.5),
        Clip(paired / "audio/train/mid-1.wav", 0.0, 0.2),
    ]
    assert features("logmel", clips, models).shape == (2, 128)
    dim = models.codec.model.config.latent_dim
    assert features("codec-latents", clips, models).shape == (2, 2 * dim)
    assert features("codec-tokens", clips, models).shape == (2, 2 * dim)
    for name in ("lm-layer-0", f"lm-layer-{layers}"):
        assert features(name, clips, models).shape == (2, 2 * models.lm.config.hidden_size)


def test_cli_writes_probe_json(paired, tmp_path):
    from audiotok.cli import main

    out = tmp_path / "probe"
    code = main(["eval", "probe", "--data", str(paired), "--features", "logmel", "--tasks", "instrument",
                 "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 0
    report = json.loads((out / "probe.json").read_text())
    assert report["features"] == ["logmel"] and report["results"]["instrument"]["logmel"]["linear"] > 0.9
    assert (out / "features" / "logmel.train.npy").is_file()
