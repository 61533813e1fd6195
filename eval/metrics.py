"""Objective quality metrics for codec evaluation: reference vs decoded audio.

Every metric is a function ``(ref, deg, ...) -> float`` over 1-D float signals (numpy arrays or
tensors) at the same sample rate, sample-aligned and of equal length (use `trim_pair`). Lower is better
for the two distances, higher for SI-SDR, PESQ and STOI. `compute_metrics` runs all of them that apply
to a kind of audio and returns a `Metrics` dataclass.

Definitions (fixed here so that figures stay comparable across runs and reports):

* ``mel_distance`` (DAC's mel reconstruction loss, averaged instead of summed over resolutions):
  at each of 7 resolutions (Hann window = FFT size w in 32, 64, ..., 2048 samples, hop w/4, centred,
  reflect padding) with n_mels = 5, 10, 20, 40, 80, 160, 320 (Slaney mel scale and norm, 0 Hz to
  Nyquist), take mel *magnitudes* M (power 1, i.e. |STFT| through the filterbank), clamp at 1e-5 and
  compute ``mean |log10 M_ref - log10 M_deg|``; the result is the mean of the 7 values. Computed at
  16 kHz (`compute_metrics` resamples). DAC's training loss is 7x this number.
* ``stft_distance`` (ParallelWaveGAN's multi-resolution STFT loss): at FFT sizes 512, 1024, 2048
  (Hann window = FFT size, hop FFT/4, centred), spectral convergence ``||S_ref - S_deg||_F / ||S_ref||_F``
  plus ``mean |ln S_ref - ln S_deg|``, magnitudes ``S = sqrt(max(|STFT|^2, 1e-7))`` as in ParallelWaveGAN;
  mean over the 3 resolutions.
* ``si_sdr``: scale-invariant SDR in dB (Le Roux et al. 2019), both signals made zero-mean.
* ``pesq_wb``: ITU-T P.862.2 wide-band PESQ (MOS-LQO, 1.04 to 4.64) from PyPI ``pesq`` at 16 kHz.
* ``stoi``: short-time objective intelligibility (Taal et al. 2011) from PyPI ``pystoi``, at 16 kHz
  (pystoi resamples to 10 kHz internally), classic (not extended) STOI.

* ``visqol``: ViSQOL v3 MOS-LQO (eval/visqol.py: speech mode for speech, audio mode for music and sfx),
  computed only when `compute_metrics` is given a scorer (``pip install '.[visqol]'``); None otherwise.

PESQ and STOI are defined for speech only, so `compute_metrics` computes them only for
``kind == "speech"``. Where they cannot be computed (silence, under 0.25 s), the value is NaN and
`Metrics.notes` says why; nothing raises.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib import metadata

import numpy as np
import torch

METRIC_SR = 16000
MEL_WINDOWS = (32, 64, 128, 256, 512, 1024, 2048)
MEL_BANDS = (5, 10, 20, 40, 80, 160, 320)
MEL_CLAMP = 1e-5
STFT_SIZES = (512, 1024, 2048)
STFT_POWER_CLAMP = 1e-7
PESQ_MIN_SECONDS = 0.25
KINDS = ("speech", "music", "sfx")

Signal = np.ndarray | torch.Tensor


def _as_tensor(x: Signal) -> torch.Tensor:
    """A 1-D float64 tensor (float64 so that identical inputs give exactly 0 and SI-SDR stays finite)."""
    t = torch.as_tensor(np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x))
    if t.dim() != 1:
        t = t.squeeze()
    if t.dim() != 1:
        raise ValueError(f"metrics take 1-D signals, got shape {tuple(t.shape)}")
    return t.to(torch.float64)


def _as_numpy(x: Signal) -> np.ndarray:
    return _as_tensor(x).numpy()


def _check_pair(ref: torch.Tensor, deg: torch.Tensor) -> None:
    if ref.shape != deg.shape:
        raise ValueError(
            f"ref and deg must have equal length, got {ref.shape[0]} and {deg.shape[0]} samples; use trim_pair"
        )
    if ref.shape[0] == 0:
        raise ValueError("ref and deg are empty")


def trim_pair(ref: Signal, deg: Signal) -> tuple[torch.Tensor, torch.Tensor]:
    """Both signals as 1-D float64 tensors cut to the shorter length (codecs pad to whole frames)."""
    r, d = _as_tensor(ref), _as_tensor(deg)
    n = min(r.shape[0], d.shape[0])
    return r[:n], d[:n]


@lru_cache(maxsize=32)
def _mel_filterbank(n_fft: int, n_mels: int, sample_rate: int) -> torch.Tensor:
    import torchaudio.functional as AF

    # [n_fft//2+1, n_mels]; Slaney scale and norm match librosa's defaults, which DAC uses.
    return AF.melscale_fbanks(
        n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate, norm="slaney", mel_scale="slaney"
    ).to(torch.float64)


def _magnitude(x: torch.Tensor, n_fft: int) -> torch.Tensor:
    """|STFT| ``[F, frames]`` with a Hann window of n_fft, hop n_fft/4, centred with reflect padding."""
    if x.shape[0] <= n_fft // 2:  # reflect padding needs more samples than half a window
        x = torch.nn.functional.pad(x, (0, n_fft // 2 + 1 - x.shape[0]))
    window = torch.hann_window(n_fft, dtype=x.dtype)
    spec = torch.stft(
        x, n_fft, hop_length=n_fft // 4, window=window, center=True, pad_mode="reflect", return_complex=True
    )
    return spec.abs()


def mel_distance(ref: Signal, deg: Signal, sample_rate: int = METRIC_SR) -> float:
    """Multi-resolution log-mel L1 distance (definition in the module docstring); 0 for identical input."""
    r, d = _as_tensor(ref), _as_tensor(deg)
    _check_pair(r, d)
    values = []
    for n_fft, n_mels in zip(MEL_WINDOWS, MEL_BANDS):
        fb = _mel_filterbank(n_fft, n_mels, sample_rate)  # [F, n_mels]
        mr = (fb.T @ _magnitude(r, n_fft)).clamp_min(MEL_CLAMP).log10()  # [n_mels, frames]
        md = (fb.T @ _magnitude(d, n_fft)).clamp_min(MEL_CLAMP).log10()
        values.append((mr - md).abs().mean().item())
    return float(np.mean(values))


def stft_distance(ref: Signal, deg: Signal) -> float:
    """Multi-resolution STFT distance: spectral convergence + log-magnitude L1, mean over resolutions."""
    r, d = _as_tensor(ref), _as_tensor(deg)
    _check_pair(r, d)
    values = []
    for n_fft in STFT_SIZES:
        sr_ = _magnitude(r, n_fft).square().clamp_min(STFT_POWER_CLAMP).sqrt()  # [F, frames]
        sd = _magnitude(d, n_fft).square().clamp_min(STFT_POWER_CLAMP).sqrt()
        convergence = torch.linalg.norm(sr_ - sd) / torch.linalg.norm(sr_)
        log_mag = (sr_.log() - sd.log()).abs().mean()
        values.append((convergence + log_mag).item())
    return float(np.mean(values))


def si_sdr(ref: Signal, deg: Signal, eps: float = 1e-12) -> float:
    """Scale-invariant SDR in dB; NaN when the reference is silent (the target has no direction)."""
    r, d = _as_tensor(ref), _as_tensor(deg)
    _check_pair(r, d)
    r, d = r - r.mean(), d - d.mean()
    ref_energy = (r * r).sum()
    if ref_energy <= eps:
        return math.nan
    target = (d * r).sum() / ref_energy * r
    noise = d - target
    # eps in both terms caps identical signals at a large finite value instead of inf.
    return float(10 * torch.log10(((target * target).sum() + eps) / ((noise * noise).sum() + eps)))


def _pesq_with_reason(ref: np.ndarray, deg: np.ndarray) -> tuple[float, str | None]:
    if ref.shape[0] < PESQ_MIN_SECONDS * METRIC_SR:
        return (
            math.nan,
            f"PESQ needs at least {PESQ_MIN_SECONDS} s of audio, got {ref.shape[0] / METRIC_SR:.3f} s",
        )
    if not np.any(np.abs(ref) > 1e-6):
        return math.nan, "PESQ undefined: the reference is silent"
    from pesq import pesq

    try:
        return float(pesq(METRIC_SR, ref, deg, "wb")), None
    except Exception as e:  # pesq raises its own errors (no utterances, buffer too short...)
        return math.nan, f"PESQ failed: {type(e).__name__}: {e}"


def pesq_wb(ref: Signal, deg: Signal) -> float:
    """Wide-band PESQ at 16 kHz (inputs must already be 16 kHz); NaN for silence or too-short input."""
    r, d = trim_pair(ref, deg)
    return _pesq_with_reason(r.numpy(), d.numpy())[0]


def _stoi_with_reason(ref: np.ndarray, deg: np.ndarray) -> tuple[float, str | None]:
    from pystoi import stoi as _stoi

    if not np.any(np.abs(ref) > 1e-6):
        return math.nan, "STOI undefined: the reference is silent"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(_stoi(ref, deg, METRIC_SR, extended=False))
    # pystoi warns and returns 1e-5 when fewer than 30 non-silent frames (~0.4 s) remain.
    if any("frames" in str(w.message) for w in caught):
        return math.nan, "STOI undefined: too few non-silent frames (needs about 0.4 s of signal)"
    return value, None


def stoi(ref: Signal, deg: Signal) -> float:
    """Classic STOI at 16 kHz (inputs must already be 16 kHz); NaN when undefined."""
    r, d = trim_pair(ref, deg)
    return _stoi_with_reason(r.numpy(), d.numpy())[0]


@dataclass
class Metrics:
    """All metrics of one (reference, decoded) pair. ``pesq_wb``/``stoi`` are None when not computed
    (not speech) and NaN when undefined for the input (the reason is in ``notes``)."""

    mel_distance: float
    stft_distance: float
    si_sdr: float
    pesq_wb: float | None = None
    stoi: float | None = None
    visqol: float | None = None
    notes: dict[str, str] = field(default_factory=dict)

    def values(self) -> dict[str, float | None]:
        """The metric values by name, without notes."""
        d = asdict(self)
        d.pop("notes")
        return d


METRIC_NAMES = ("mel_distance", "stft_distance", "si_sdr", "pesq_wb", "stoi", "visqol")
OPTIONAL_METRICS = ("visqol",)  # computed on request only; a report shows them only where computed
HIGHER_IS_BETTER = {
    "mel_distance": False,
    "stft_distance": False,
    "si_sdr": True,
    "pesq_wb": True,
    "stoi": True,
    "visqol": True,
}


def compute_metrics(ref: Signal, deg: Signal, sr: int, kind: str, visqol=None) -> Metrics:
    """Every metric that applies to ``kind`` ("speech", "music" or "sfx"), computed at 16 kHz.

    ref, deg: 1-D signals at ``sr``, sample-aligned; the longer one is trimmed to the shorter.
    visqol: an `eval.visqol.VisqolScorer` to score ViSQOL too (every kind).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    r, d = trim_pair(ref, deg)
    if sr != METRIC_SR:
        from codec.tokens import resample

        r, d = resample(r, sr, METRIC_SR), resample(d, sr, METRIC_SR)
    out = Metrics(mel_distance=mel_distance(r, d), stft_distance=stft_distance(r, d), si_sdr=si_sdr(r, d))
    if math.isnan(out.si_sdr):
        out.notes["si_sdr"] = "SI-SDR undefined: the reference is silent"
    if kind == "speech":
        rn, dn = r.numpy(), d.numpy()
        out.pesq_wb, reason = _pesq_with_reason(rn, dn)
        if reason:
            out.notes["pesq_wb"] = reason
        out.stoi, reason = _stoi_with_reason(rn, dn)
        if reason:
            out.notes["stoi"] = reason
    if visqol is not None:
        out.visqol, reason = visqol.score(r.numpy(), d.numpy(), kind, METRIC_SR)
        if reason:
            out.notes["visqol"] = reason
    return out


def metric_implementations(visqol: bool = True) -> dict[str, str]:
    """Which implementation (and version) computed each metric, for reports (``visqol``: name ViSQOL's,
    which only runs when asked for)."""

    def version(pkg: str) -> str:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return "not installed"

    torch_v = f"torch {torch.__version__}, torchaudio {version('torchaudio')}"
    impl = {
        "mel_distance": f"audiotok eval.metrics (DAC-style 7-resolution log10 mel L1, mean, 16 kHz; {torch_v})",
        "stft_distance": f"audiotok eval.metrics (3-resolution SC + log-mag L1, mean, 16 kHz; {torch_v})",
        "si_sdr": "audiotok eval.metrics (zero-mean SI-SDR, dB, 16 kHz)",
        "pesq_wb": f"pesq {version('pesq')} (ITU-T P.862.2 wide-band, 16 kHz)",
        "stoi": f"pystoi {version('pystoi')} (classic STOI, 16 kHz input)",
    }
    if visqol:
        impl["visqol"] = (
            f"visqol-python {version('visqol-python')} (ViSQOL v3; speech mode 16 kHz, lattice "
            "mapping; audio mode 48 kHz for music and sfx; only when asked for)"
        )
    return impl
