"""Multimodal tests: a tiny paired set (tones, noise, chirps with captions and questions), tokenized with
the default codec, and a tiny model trained on it for a few steps (session-scoped: made once)."""

from __future__ import annotations

from pathlib import Path

import pytest
from paired import make_paired_set


@pytest.fixture(scope="session")
def paired_set(tmp_path_factory) -> Path:
    return make_paired_set(tmp_path_factory.mktemp("alm"), {"train": 9, "valid": 6, "test": 6, "unseen": 3})


@pytest.fixture(scope="session")
def tiny_alm(paired_set, tmp_path_factory) -> Path:
    """An export of configs/multimodal/tiny.yaml trained 4 steps on the tiny set."""
    from accelerate.state import AcceleratorState

    from multimodal.train import load_config, train

    AcceleratorState._reset_state(True)
    model_cfg, cfg = load_config(Path(__file__).resolve().parents[2] / "configs/multimodal/tiny.yaml")
    export = train(model_cfg, cfg, paired_set, tmp_path_factory.mktemp("run"), quiet=True)
    AcceleratorState._reset_state(True)
    return export


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)
