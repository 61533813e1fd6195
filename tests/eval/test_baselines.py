"""eval.baselines: Opus and Codec2 round trips keep length and alignment, and their measured bitrate
matches the nominal one. Skipped cleanly where opus-tools / codec2 are not installed."""

import shutil

import numpy as np
import pytest
import torch

from eval import baselines as B

SR = 16000
needs_opus = pytest.mark.skipif(
    shutil.which("opusenc") is None or shutil.which("opusdec") is None,
    reason="opus-tools not installed (scripts/install_system_deps.sh)",
)
needs_codec2 = pytest.mark.skipif(
    shutil.which("c2enc") is None or shutil.which("c2dec") is None,
    reason="codec2 not installed (scripts/install_system_deps.sh)",
)


def chirp(seconds: float = 1.0, sr: int = SR, f0: float = 100.0, f1: float = 4000.0) -> torch.Tensor:
    t = np.arange(int(seconds * sr)) / sr
    x = 0.5 * np.sin(2 * np.pi * (f0 * t + (f1 - f0) / (2 * seconds) * t**2))
    return torch.tensor(x, dtype=torch.float32)


def voiced(seconds: float = 1.0, sr: int = SR, seed: int = 0) -> torch.Tensor:
    """Harmonic bursts with random lengths and gaps: spectrally speech-like, with onsets to align on."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * np.cumsum(110 + 30 * np.sin(2 * np.pi * 0.7 * t)) / sr
    harm = sum(np.sin(k * phase) / k for k in range(1, 30))
    x = np.zeros_like(t)
    pos = int(0.05 * sr)
    while pos < len(x):
        d, g = rng.integers(sr // 20, sr // 5), rng.integers(sr // 20, sr // 5)
        x[pos : pos + d] = harm[pos : pos + d]
        pos += d + g
    return torch.tensor(0.2 * x, dtype=torch.float32)


def best_lag(ref: torch.Tensor, deg: torch.Tensor, max_lag: int = 50) -> int:
    """The lag L maximising sum ref[n] * deg[n + L] (positive: deg is late)."""
    r, d = ref.double().numpy(), deg.double().numpy()
    n = len(r)
    scores = [
        np.dot(r[max(0, -lag) : n - max(0, lag)], d[max(0, lag) : n - max(0, -lag)])
        for lag in range(-max_lag, max_lag + 1)
    ]
    return int(np.argmax(scores)) - max_lag


def bursts(offsets: list[int], sr: int = SR) -> torch.Tensor:
    """Isolated Hann-windowed 30 ms harmonic bursts centred at ``offsets`` (samples)."""
    n = max(offsets) + sr // 2
    t = np.arange(n) / sr
    harm = sum(np.sin(2 * np.pi * 120 * k * t) / k for k in range(1, 30))
    window = np.zeros(n)
    width = int(0.06 * sr)
    for c in offsets:
        window[c - width // 2 : c - width // 2 + width] = np.hanning(width)
    return torch.tensor(0.3 * harm * window, dtype=torch.float32)


def energy_centroid(x: torch.Tensor) -> float:
    e = x.double() ** 2
    return float((torch.arange(len(x), dtype=torch.float64) * e).sum() / e.sum())


@needs_opus
def test_opus_roundtrip_length_alignment_and_bitrate():
    x = chirp()
    result = B.OpusBaseline(12).roundtrip_with_stats(x, SR)
    assert result.wav.shape == x.shape and result.wav.dtype == torch.float32
    assert abs(best_lag(x, result.wav)) <= 2
    assert result.payload_bps == pytest.approx(12000, rel=0.05)
    assert result.file_bps > result.payload_bps  # Ogg pages and the OpusHead/OpusTags headers
    low = B.OpusBaseline(6)
    y = low.roundtrip(voiced(), SR)  # at 6 kbps SILK does not keep a chirp's phase; voiced audio it does
    assert abs(best_lag(voiced(), y)) <= 2
    assert low.name == "opus6" and low.bits_per_second == 6000


@needs_opus
def test_opus_other_input_rate_keeps_length():
    x = voiced(0.5, sr=24000)
    y = B.OpusBaseline(8).roundtrip(x, 24000)
    assert y.shape == x.shape
    assert abs(best_lag(x, y)) <= 3


@needs_codec2
@pytest.mark.parametrize("mode", [1600, 3200])
def test_codec2_roundtrip_length_alignment_and_bitrate(mode):
    x = voiced(2.0, seed=1)
    result = B.Codec2Baseline(mode).roundtrip_with_stats(x, SR)
    assert result.wav.shape == x.shape
    assert result.payload_bps == pytest.approx(mode, rel=0.02)
    assert result.file_bps == result.payload_bps  # raw frames, no container


@needs_codec2
@pytest.mark.parametrize("mode", [1600, 3200])
def test_codec2_alignment(mode):
    # Codec2 synthesises its own phase, so waveform correlation says nothing; an isolated burst's energy
    # centroid does. Uncompensated, the output would be 320 samples (20 ms) late.
    step = SR // 4
    offsets = [step + 37, 2 * step + 91, 3 * step + 150]
    x = bursts(offsets)
    y = B.Codec2Baseline(mode).roundtrip(x, SR)
    shifts = [
        energy_centroid(y[c - step // 2 : c + step // 2]) - energy_centroid(x[c - step // 2 : c + step // 2])
        for c in offsets
    ]
    assert abs(np.mean(shifts)) <= 12, shifts


def test_parse_and_errors(monkeypatch):
    assert B.parse_baselines("none") == [] and B.parse_baselines(None) == []
    names = [b.name for b in B.parse_baselines(B.DEFAULT_BASELINES)]
    assert names == ["opus6", "opus8", "opus12", "codec2_1600", "codec2_3200"]
    with pytest.raises(ValueError, match="unknown baseline"):
        B.make_baseline("mp3_128")
    with pytest.raises(ValueError, match="Codec2 mode"):
        B.Codec2Baseline(700)
    with pytest.raises(ValueError, match="mono"):
        B.OpusBaseline(6).roundtrip(torch.zeros(2, 100), SR)
    monkeypatch.setattr(B.shutil, "which", lambda tool: None)
    with pytest.raises(B.BaselineUnavailableError, match="opusenc is not installed.*opus-tools"):
        B.OpusBaseline(6).roundtrip(chirp(0.1), SR)
    with pytest.raises(B.BaselineUnavailableError, match="c2enc is not installed.*codec2"):
        B.Codec2Baseline(1600).roundtrip(chirp(0.1), SR)
    assert "not installed" in B.unavailable_reason(B.OpusBaseline(6))


def test_ogg_packet_sizes_follows_lacing():
    def page(lacing: list[int]) -> bytes:
        header = b"OggS" + bytes(22) + bytes([len(lacing)]) + bytes(lacing)
        return header + bytes(sum(lacing))

    # a 300-byte packet continued over two lacing values, a 10-byte one, then one spanning two pages
    data = page([255, 45, 10, 255]) + page([255, 3])
    assert B.ogg_packet_sizes(data) == [300, 10, 513]
    with pytest.raises(ValueError, match="not an Ogg"):
        B.ogg_packet_sizes(b"RIFF" + bytes(40))
