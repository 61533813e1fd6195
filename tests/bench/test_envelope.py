"""The band-envelope oracle (bench/codec_envelope.py) imposes the input's band energies and keeps the phase."""

from __future__ import annotations

import torch

from bench.codec_envelope import equalise, smooth
from codec.train.losses import BandEnvelopeLoss


def test_equalise_undoes_a_gain_and_a_tilt_but_not_a_change_of_waveform():
    torch.manual_seed(0)
    env = BandEnvelopeLoss(16000)
    x = 0.1 * torch.randn(1, 16000)
    for frames in (0, 13, 5):
        back = equalise(env, x, 0.3 * x, frames)[:, 600:-600]
        # Exact but for the DC and Nyquist bins, which no mel band covers (the oracle leaves them out).
        assert float((back - x[:, 600:-600]).norm() / x[:, 600:-600].norm()) < 0.05
    # A tilt (high band 10 dB down) is a slowly varying envelope: equalised, the band energies are the input's.
    spec = torch.fft.rfft(x)
    spec[:, 4000:] *= 10 ** (-10 / 20)
    tilted = torch.fft.irfft(spec, n=16000)
    assert float(env(tilted, x)) > 0.1 and float(env(equalise(env, x, tilted, 13), x)) < 0.02
    # Another waveform with the same envelope stays another waveform: only energies move, phases are kept.
    other, env104 = 0.03 * torch.randn(1, 16000), BandEnvelopeLoss(16000, frames=(13,))
    out = equalise(env, x, other, 13)
    assert (
        float(env104(other, x)) > 0.9
        and float(env104(out, x)) < 0.05
        and float((out - x).square().mean() / x.square().mean()) > 0.5
    )


def test_smooth_keeps_length_and_averages():
    power = torch.arange(12.0).reshape(1, 1, 12)
    assert smooth(power, 5).shape == power.shape and smooth(power, 0).unique().tolist() == [5.5]
    assert float(smooth(power, 5)[0, 0, 6]) == 6.0
