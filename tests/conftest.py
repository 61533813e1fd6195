"""Shared fixtures: tiny audio files made on the spot (tones, noise, chirps), never downloaded.

Each writer fixture is a function ``write(path, seconds=0.5, sample_rate=16000, channels=1, **kwargs)``
that writes the file with soundfile and returns its ``Path``. Extra keyword arguments go to
``soundfile.write`` (``format="FLAC"``, ``subtype="PCM_24"``, ...); the format follows the file's
extension unless given, so ``format="FLAC"`` with a ``.wav`` name writes a FLAC file named .wav.
"""

from __future__ import annotations

import os

# No test may reach a model hub (CI has no network beyond the package registries); set before any
# transformers / huggingface_hub import reads them.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

torch.set_num_threads(1)  # the machine is shared; the suite's tensors are tiny anyway


def tone(
    seconds: float = 0.5,
    sample_rate: int = 16000,
    freq: float = 440.0,
    channels: int = 1,
    amplitude: float = 0.5,
) -> np.ndarray:
    """A sine ``[S, C]`` (soundfile layout); channel c is at ``freq * (c + 1)``."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    return np.stack([amplitude * np.sin(2 * np.pi * freq * (c + 1) * t) for c in range(channels)], axis=1)


def noise(
    seconds: float = 0.5, sample_rate: int = 16000, channels: int = 1, amplitude: float = 0.3, seed: int = 0
) -> np.ndarray:
    """Uniform white noise ``[S, C]``, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    return amplitude * rng.uniform(-1, 1, size=(int(round(seconds * sample_rate)), channels))


def chirp(
    seconds: float = 0.5,
    sample_rate: int = 16000,
    channels: int = 1,
    f0: float = 100.0,
    f1: float = 4000.0,
    amplitude: float = 0.5,
) -> np.ndarray:
    """A linear sweep from f0 to f1 Hz, ``[S, C]``."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * max(seconds, 1e-9)))
    return np.repeat((amplitude * np.sin(phase))[:, None], channels, axis=1)


def _writer(make: Callable[..., np.ndarray]) -> Callable[..., Path]:
    def write(
        path: str | Path, seconds: float = 0.5, sample_rate: int = 16000, channels: int = 1, **kwargs
    ) -> Path:
        sf_keys = {"format", "subtype", "endian"}
        sf_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in sf_keys}
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = make(seconds=seconds, sample_rate=sample_rate, channels=channels, **kwargs)
        sf.write(path, data, sample_rate, **sf_kwargs)
        return path

    return write


@pytest.fixture
def write_tone() -> Callable[..., Path]:
    """``write_tone(path, seconds=0.5, sample_rate=16000, channels=1, freq=440.0, **sf_kwargs) -> Path``."""
    return _writer(tone)


@pytest.fixture
def write_noise() -> Callable[..., Path]:
    """``write_noise(path, seconds=0.5, sample_rate=16000, channels=1, seed=0, **sf_kwargs) -> Path``."""
    return _writer(noise)


@pytest.fixture
def write_chirp() -> Callable[..., Path]:
    """``write_chirp(path, seconds=0.5, sample_rate=16000, channels=1, **sf_kwargs) -> Path``."""
    return _writer(chirp)


@pytest.fixture
def mixed_audio_folder(tmp_path, write_tone, write_noise, write_chirp) -> Path:
    """A folder with a wav, a flac and an ogg (one in a subfolder), at mixed rates and channel counts."""
    root = tmp_path / "audio"
    write_tone(root / "tone.wav", seconds=0.5, sample_rate=16000)
    write_chirp(root / "sub" / "chirp.flac", seconds=0.7, sample_rate=22050, channels=2)
    write_noise(root / "noise.ogg", seconds=0.4, sample_rate=16000, subtype="VORBIS")
    return root
