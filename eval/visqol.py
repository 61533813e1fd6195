"""ViSQOL v3 (Hines et al. 2015; Chinen et al. 2020), the full-reference quality score that SoundStream,
EnCodec and DAC report, from PyPI ``visqol-python`` (a Python port that matches Google's C++ ViSQOL to
three decimals in its conformance tests). Install it with ``pip install '.[visqol]'``.

Fixed here so that figures stay comparable across runs:

* speech: speech mode at 16 kHz with the deep-lattice mapping (C++ ViSQOL's default,
  ``--use_lattice_model=true``), MOS-LQO on a 1-5 scale;
* music and sound effects: audio mode, which is defined at 48 kHz: both signals are resampled from the
  16 kHz evaluation rate to 48 kHz first, so nothing above 8 kHz exists in either (the score compares a
  16 kHz codec with its 16 kHz reference, not with full-band audio). MOS-LQO, at most about 4.73.

ViSQOL aligns the two signals itself. Where it cannot score a pair (e.g. a silent reference) the value is
NaN and the reason is kept, like PESQ's.
"""

from __future__ import annotations

import numpy as np

INSTALL_HINT = "pip install '.[visqol]' (visqol-python with its lattice and numba extras)"
SPEECH_SR = 16000
AUDIO_SR = 48000


class VisqolUnavailableError(RuntimeError):
    """visqol-python (or its lattice model runtime) is not installed."""


class VisqolScorer:
    """``score(ref, deg, kind)`` for 16 kHz 1-D signals of equal length -> (MOS-LQO, reason or None)."""

    def __init__(self):
        try:
            from visqol import VisqolApi
        except ImportError:
            raise VisqolUnavailableError(f"ViSQOL needs visqol-python: {INSTALL_HINT}") from None
        self._api = VisqolApi
        self._modes: dict[str, object] = {}

    def _mode(self, mode: str):
        if mode not in self._modes:
            api = self._api()
            try:
                # speech: the lattice mapping, as C++ ViSQOL by default; never the polynomial fallback
                api.create(mode=mode, **({"use_lattice_model": True} if mode == "speech" else {}))
            except ImportError as e:
                raise VisqolUnavailableError(f"ViSQOL {mode} mode: {e}; {INSTALL_HINT}") from None
            self._modes[mode] = api
        return self._modes[mode]

    def score(
        self, ref: np.ndarray, deg: np.ndarray, kind: str, sr: int = SPEECH_SR
    ) -> tuple[float, str | None]:
        if sr != SPEECH_SR:
            raise ValueError(f"VisqolScorer scores {SPEECH_SR} Hz signals, got {sr} Hz")
        ref, deg = np.asarray(ref, dtype=np.float64), np.asarray(deg, dtype=np.float64)
        if kind == "speech":
            mode, rate = "speech", SPEECH_SR
        else:
            import soxr

            mode, rate = "audio", AUDIO_SR
            ref, deg = soxr.resample(ref, sr, rate), soxr.resample(deg, sr, rate)
        if not np.any(ref):
            return float("nan"), "ViSQOL undefined: the reference is silent"
        try:
            return float(self._mode(mode).measure_from_arrays(ref, deg, sample_rate=rate).moslqo), None
        except VisqolUnavailableError:
            raise
        except Exception as e:  # the port raises plain errors on pairs it cannot align
            return float("nan"), f"ViSQOL failed: {e}"
