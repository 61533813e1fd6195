"""Classical codecs as baselines: Opus (opus-tools) and Codec2 (codec2), through their command-line tools.

Each baseline has a ``name``, a nominal ``bits_per_second`` and ``roundtrip(wav, sr) -> wav`` that
encodes and decodes one mono signal and returns it at the input rate, sample-aligned with the input and
of the same length, so that the metrics compare the right samples. `roundtrip_with_stats` also returns
the measured bitrate and wall times.

Alignment, measured on this project's test signals (tests/eval/test_baselines.py checks it):

* Opus: we encode 16 kHz mono WAV with ``opusenc --bitrate N --hard-cbr`` and decode with
  ``opusdec --rate 16000``; opusdec removes the encoder's pre-skip (lookahead) and trims the end to the
  stream's granule position, so its output is already aligned (within a sample) and of equal length.
* Codec2: 8 kHz raw s16 in and out (``c2enc MODE in.raw out.bit``; a ``.bit`` name keeps the file
  headerless). The decoder output lags the input by 160 samples (20 ms) in modes 1600 and 3200: the
  analysis window is centred 160 samples behind the newest input, and overlap-add synthesis places a
  frame's centre at the end of the 80-sample block it outputs. We pad the input's end and drop the
  first 160 output samples. Codec2 does not keep phase, so the lag is checked on spectra, not waveforms.

Measured bitrate: ``payload`` counts only codec frames (Opus packets without the OpusHead/OpusTags
headers and Ogg framing; the whole file for Codec2, which has no container) over the input duration;
``file`` counts the whole file. Wall times include process start-up (a few ms per call).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from codec.tokens import resample

OPUS_SR = 16000
CODEC2_SR = 8000
CODEC2_DELAY = 160  # samples at 8 kHz (see module docstring)
CODEC2_FRAME = {1600: 320, 3200: 160}  # samples per codec frame at 8 kHz (40 ms, 20 ms)
DEFAULT_BASELINES = "opus6,opus8,opus12,codec2_1600,codec2_3200"


class BaselineUnavailableError(RuntimeError):
    """A baseline's command-line tool is not installed."""


@dataclass
class RoundtripResult:
    """One encode/decode. wav: float32 ``[S]`` at the input rate, aligned with and as long as the input."""

    wav: torch.Tensor
    payload_bits: int
    file_bits: int
    seconds: float
    encode_seconds: float
    decode_seconds: float

    @property
    def payload_bps(self) -> float:
        return self.payload_bits / self.seconds

    @property
    def file_bps(self) -> float:
        return self.file_bits / self.seconds


def _require(*tools: str, package: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            raise BaselineUnavailableError(
                f"{tool} is not installed; install the Debian package {package} "
                "(scripts/install_system_deps.sh does it) or pass --baselines none."
            )


def _run(cmd: list[str]) -> float:
    """Run a tool; return its wall time. A failure names the command and shows its stderr."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return elapsed


def _mono(wav: torch.Tensor | np.ndarray) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(wav) if not isinstance(wav, torch.Tensor) else wav).float()
    if t.dim() == 2 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 1:
        raise ValueError(f"baselines take mono audio [S] or [1, S], got shape {tuple(t.shape)}")
    return t


def _fit(wav: torch.Tensor, n: int) -> torch.Tensor:
    """Cut or zero-pad to exactly n samples."""
    if wav.shape[0] >= n:
        return wav[:n]
    return torch.nn.functional.pad(wav, (0, n - wav.shape[0]))


def ogg_packet_sizes(data: bytes) -> list[int]:
    """Sizes in bytes of the packets of a single-stream Ogg file, in order (RFC 3533 lacing)."""
    sizes: list[int] = []
    current = 0
    pos = 0
    while pos + 27 <= len(data):
        if data[pos : pos + 4] != b"OggS":
            raise ValueError("not an Ogg stream (missing OggS capture pattern)")
        num_segments = data[pos + 26]
        lacing = data[pos + 27 : pos + 27 + num_segments]
        for value in lacing:
            current += value
            if value < 255:  # a lacing value under 255 ends a packet
                sizes.append(current)
                current = 0
        pos += 27 + num_segments + sum(lacing)
    return sizes


@dataclass
class OpusBaseline:
    """Opus at a hard-CBR bitrate through opusenc/opusdec, 16 kHz mono, 20 ms frames."""

    bitrate_kbps: float

    @property
    def name(self) -> str:
        return f"opus{self.bitrate_kbps:g}"

    @property
    def bits_per_second(self) -> float:
        return self.bitrate_kbps * 1000.0

    def roundtrip(self, wav: torch.Tensor | np.ndarray, sr: int) -> torch.Tensor:
        """Encode and decode mono ``[S]`` audio at ``sr``; returns float32 ``[S]`` at ``sr``, aligned."""
        return self.roundtrip_with_stats(wav, sr).wav

    def roundtrip_with_stats(self, wav: torch.Tensor | np.ndarray, sr: int) -> RoundtripResult:
        _require("opusenc", "opusdec", package="opus-tools")
        x = _mono(wav)
        n = x.shape[0]
        x16 = resample(x, sr, OPUS_SR).clamp(-1.0, 1.0)
        with tempfile.TemporaryDirectory(prefix="audiotok-opus-") as tmp:
            src, enc, dec = Path(tmp, "in.wav"), Path(tmp, "out.opus"), Path(tmp, "out.wav")
            sf.write(src, x16.numpy(), OPUS_SR, subtype="PCM_16")
            t_enc = _run(
                [
                    "opusenc",
                    "--quiet",
                    "--bitrate",
                    f"{self.bitrate_kbps:g}",
                    "--hard-cbr",
                    "--serial",
                    "1",
                    str(src),
                    str(enc),
                ]
            )
            t_dec = _run(["opusdec", "--quiet", "--rate", str(OPUS_SR), str(enc), str(dec)])
            data = enc.read_bytes()
            y16, _ = sf.read(dec, dtype="float32", always_2d=True)
        packets = ogg_packet_sizes(data)[2:]  # drop the OpusHead and OpusTags header packets
        y = resample(torch.from_numpy(np.ascontiguousarray(y16[:, 0])), OPUS_SR, sr)
        return RoundtripResult(
            wav=_fit(y, n),
            payload_bits=8 * sum(packets),
            file_bits=8 * len(data),
            seconds=n / sr,
            encode_seconds=t_enc,
            decode_seconds=t_dec,
        )


@dataclass
class Codec2Baseline:
    """Codec2 in mode 1600 or 3200 through c2enc/c2dec, 8 kHz mono raw s16."""

    mode: int

    def __post_init__(self) -> None:
        if self.mode not in CODEC2_FRAME:
            raise ValueError(f"Codec2 mode must be one of {sorted(CODEC2_FRAME)}, got {self.mode}")

    @property
    def name(self) -> str:
        return f"codec2_{self.mode}"

    @property
    def bits_per_second(self) -> float:
        return float(self.mode)

    def roundtrip(self, wav: torch.Tensor | np.ndarray, sr: int) -> torch.Tensor:
        """Encode and decode mono ``[S]`` audio at ``sr``; returns float32 ``[S]`` at ``sr``, aligned."""
        return self.roundtrip_with_stats(wav, sr).wav

    def roundtrip_with_stats(self, wav: torch.Tensor | np.ndarray, sr: int) -> RoundtripResult:
        _require("c2enc", "c2dec", package="codec2")
        x = _mono(wav)
        n = x.shape[0]
        x8 = resample(x, sr, CODEC2_SR).clamp(-1.0, 1.0)
        n8 = x8.shape[0]
        # Bits are measured on the unpadded signal; the padded copy only flushes the decoder's delay.
        frame = CODEC2_FRAME[self.mode]
        payload_frames = -(-n8 // frame)
        padded = torch.nn.functional.pad(x8, (0, CODEC2_DELAY + frame))
        pcm = (padded.numpy() * 32767.0).round().astype("<i2")
        with tempfile.TemporaryDirectory(prefix="audiotok-codec2-") as tmp:
            src, enc, dec = Path(tmp, "in.raw"), Path(tmp, "out.bit"), Path(tmp, "out.raw")
            pcm.tofile(src)
            t_enc = _run(["c2enc", str(self.mode), str(src), str(enc)])
            t_dec = _run(["c2dec", str(self.mode), str(enc), str(dec)])
            y8 = np.fromfile(dec, dtype="<i2").astype(np.float32) / 32768.0
            bytes_per_frame = enc.stat().st_size / (padded.shape[0] // frame)  # c2enc drops a partial frame
        y8 = torch.from_numpy(y8[CODEC2_DELAY : CODEC2_DELAY + n8].copy())
        y = resample(_fit(y8, n8), CODEC2_SR, sr)
        bits = int(round(8 * bytes_per_frame * payload_frames))
        return RoundtripResult(
            wav=_fit(y, n),
            payload_bits=bits,
            file_bits=bits,
            seconds=n / sr,
            encode_seconds=t_enc,
            decode_seconds=t_dec,
        )


Baseline = OpusBaseline | Codec2Baseline


def make_baseline(name: str) -> Baseline:
    """``opus<kbps>`` (e.g. opus6) or ``codec2_<mode>`` (codec2_1600, codec2_3200)."""
    name = name.strip().lower()
    try:
        if name.startswith("opus"):
            return OpusBaseline(float(name[4:]))
        if name.startswith("codec2_"):
            return Codec2Baseline(int(name[7:]))
    except ValueError:
        pass
    raise ValueError(f"unknown baseline {name!r}; use opus<kbps> (e.g. opus6) or codec2_1600 / codec2_3200")


def parse_baselines(spec: str | None) -> list[Baseline]:
    """A comma-separated list of baseline names; ``"none"`` or empty gives no baselines."""
    if spec is None or spec.strip().lower() in ("", "none"):
        return []
    return [make_baseline(part) for part in spec.split(",") if part.strip()]


def unavailable_reason(baseline: Baseline) -> str | None:
    """Why the baseline cannot run here (its tool is missing), or None when it can."""
    if isinstance(baseline, OpusBaseline):
        tools, package = ("opusenc", "opusdec"), "opus-tools"
    else:
        tools, package = ("c2enc", "c2dec"), "codec2"
    try:
        _require(*tools, package=package)
    except BaselineUnavailableError as e:
        return str(e)
    return None
