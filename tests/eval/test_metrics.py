"""eval.metrics: identical signals score perfectly, more noise scores monotonically worse, edge cases
(silence, too short, unequal lengths, other sample rates) give NaN with a reason or a clear error."""

import math

import numpy as np
import pytest
import torch

from eval.metrics import (
    METRIC_NAMES,
    compute_metrics,
    mel_distance,
    metric_implementations,
    pesq_wb,
    si_sdr,
    stft_distance,
    stoi,
    trim_pair,
)

SR = 16000


def speech_like(seconds: float = 1.5, sr: int = SR) -> np.ndarray:
    """A voiced, formant-shaped harmonic signal with a gliding pitch and syllable-rate amplitude."""
    t = np.arange(int(seconds * sr)) / sr
    f0 = 130 + 30 * np.sin(2 * np.pi * 1.1 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(
        np.sin(k * phase)
        * (np.exp(-(((k * f0 - 700) / 400) ** 2)) + 0.5 * np.exp(-(((k * f0 - 1500) / 500) ** 2)))
        for k in range(1, 40)
    )
    return 0.2 * x * (0.3 + 0.7 * np.sin(2 * np.pi * 3 * t) ** 2)


def with_noise(x: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return x + rng.standard_normal(len(x)) * np.std(x) * 10 ** (-snr_db / 20)


def test_identical_signals_score_perfectly():
    x = speech_like()
    m = compute_metrics(x, x.copy(), SR, "speech")
    assert m.mel_distance == 0.0 and m.stft_distance == 0.0
    assert m.si_sdr > 100
    assert m.pesq_wb > 4.5
    assert m.stoi > 0.99
    assert m.notes == {}


def test_more_noise_is_monotonically_worse():
    x = speech_like()
    scores = [compute_metrics(x, with_noise(x, snr), SR, "speech") for snr in (40, 25, 10)]
    for a, b in zip(scores, scores[1:]):
        assert a.mel_distance < b.mel_distance
        assert a.stft_distance < b.stft_distance
        assert a.si_sdr > b.si_sdr
        assert a.pesq_wb > b.pesq_wb
        assert a.stoi > b.stoi
    assert scores[0].si_sdr == pytest.approx(40, abs=0.5)


def test_si_sdr_ignores_scale():
    x = speech_like(0.5)
    assert si_sdr(x, 0.25 * x) > 100
    assert si_sdr(x, 3 * with_noise(x, 10)) == pytest.approx(10, abs=0.5)


def test_silence_gives_nan_with_reasons_not_a_crash():
    z = np.zeros(SR)
    m = compute_metrics(z, z, SR, "speech")
    assert math.isnan(m.pesq_wb) and math.isnan(m.stoi) and math.isnan(m.si_sdr)
    assert "silent" in m.notes["pesq_wb"] and "silent" in m.notes["stoi"]
    assert m.mel_distance == 0.0
    assert math.isnan(pesq_wb(z, z)) and math.isnan(stoi(z, z))


def test_too_short_gives_nan_with_reason():
    x = speech_like(0.1)
    m = compute_metrics(x, x, SR, "speech")
    assert math.isnan(m.pesq_wb) and "0.25 s" in m.notes["pesq_wb"]
    assert math.isnan(m.stoi)


def test_speech_metrics_only_for_speech():
    x = speech_like(0.5)
    y = with_noise(x, 20)
    for kind in ("music", "sfx"):
        m = compute_metrics(x, y, SR, kind)
        assert m.pesq_wb is None and m.stoi is None
        assert set(m.values()) == set(METRIC_NAMES)
    with pytest.raises(ValueError, match="kind"):
        compute_metrics(x, y, SR, "podcast")


def test_other_rates_and_tensors_and_lengths():
    x24 = speech_like(1.0, sr=24000)
    y24 = with_noise(x24, 30)
    m = compute_metrics(torch.tensor(x24), torch.tensor(y24[:-100]), 24000, "speech")  # trimmed, resampled
    assert 0 < m.mel_distance < 2 and m.pesq_wb > 1.0
    with pytest.raises(ValueError, match="equal length"):
        mel_distance(x24, y24[:-1])
    with pytest.raises(ValueError, match="equal length"):
        stft_distance(x24, y24[:-1])
    r, d = trim_pair(x24[None], y24[:-5])  # [1, S] is accepted as mono
    assert r.shape == d.shape == (len(x24) - 5,)


def test_metric_implementations_name_versions():
    impl = metric_implementations()
    assert set(impl) == set(METRIC_NAMES)
    assert impl["pesq_wb"].startswith("pesq ") and impl["stoi"].startswith("pystoi ")
