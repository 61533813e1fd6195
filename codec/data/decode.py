"""Decode one corpus job to a 16 kHz mono waveform: audio files, Doom WAD lumps, music21 scores, TTS commands.

A job (a dict listed by a stage of ``codec.data.sources``) names its ``loader``:

- ``file``: any audio file, read by soundfile, else by the ``ffmpeg`` CLI;
- ``zip``: one audio file inside a zip archive (0 A.D.'s ``public.zip``), copied to a temporary file and read;
- ``wad``: a DMX sound lump read straight from a Doom WAD (8-bit unsigned PCM, usually 11 kHz);
- ``music21``: a music21 corpus piece converted to MIDI (a random General MIDI program per part) and rendered by
  the ``fluidsynth`` CLI with ``fluid-soundfont-gm``;
- ``cmd``: a command (espeak-ng, flite, text2wave) that writes a wav to the ``{out}`` placeholder.

Everything here runs in the build's worker processes, one job at a time.
"""

from __future__ import annotations

import ctypes
import math
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000  # every corpus clip: 16 kHz mono
SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"


def resample_np(wav: np.ndarray, orig_sr: int, new_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling of a float waveform [S] (scipy), exact for integer rate ratios."""
    if orig_sr == new_sr:
        return wav.astype(np.float32)
    from scipy.signal import resample_poly

    g = math.gcd(orig_sr, new_sr)
    return resample_poly(wav, new_sr // g, orig_sr // g).astype(np.float32)


def band_limit(wav: np.ndarray, sample_rate: int, rate: int) -> np.ndarray:
    """``wav`` [S] as if recorded at ``rate``: resampled down and back up (polyphase), same length."""
    back = resample_np(resample_np(wav, sample_rate, rate), rate, sample_rate)[: len(wav)]
    return np.pad(back, (0, len(wav) - len(back))).astype(np.float32)


def mix_at_snr(signal: np.ndarray, under: np.ndarray, snr_db: float) -> np.ndarray:
    """``signal`` with ``under`` (zero-padded to its length) added ``snr_db`` dB below it in RMS power.

    A silent ``signal`` or ``under`` leaves ``signal`` as it is."""
    under = np.pad(under, (0, max(0, len(signal) - len(under))))[: len(signal)]
    p_signal, p_under = float(np.mean(signal**2)), float(np.mean(under**2))
    if p_signal < 1e-10 or p_under < 1e-10:
        return signal
    return (signal + under * math.sqrt(p_signal / p_under * 10 ** (-snr_db / 10))).astype(np.float32)


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child before exec
    """Linux: SIGKILL this process when its parent dies (prctl PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


def run_tool(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run`` for the decoders' CLI tools, whose process dies with the worker that started it.

    The build stops a stage by terminating its worker pool once the budget is reached; without this, a
    fluidsynth render in flight outlived its worker (and its timeout) and held a core for the rest of the
    build and the training after it."""
    if sys.platform.startswith("linux"):
        kwargs.setdefault("preexec_fn", _die_with_parent)
    return subprocess.run(cmd, **kwargs)


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode any audio file to float32 mono [S] at ``sample_rate`` (soundfile, else the ffmpeg CLI)."""
    try:
        import soundfile

        data, sr = soundfile.read(str(path), dtype="float32", always_2d=True)
        return resample_np(data.mean(axis=1), sr, sample_rate)
    except Exception:  # noqa: BLE001 - any libsndfile failure falls back to ffmpeg
        pass
    if shutil.which("ffmpeg") is None:
        raise RuntimeError(
            f"{path}: soundfile cannot read it and ffmpeg is not installed (apt-get install ffmpeg)."
        )
    cmd = [
        "ffmpeg",
        "-nostdin",
        "-v",
        "error",
        "-i",
        str(path),
        "-ac",
        "1",
        "-ar",
        str(sample_rate),
        "-f",
        "f32le",
        "-",
    ]
    r = run_tool(cmd, capture_output=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"{path}: ffmpeg could not decode it: {r.stderr.decode(errors='replace')[:200]}")
    return np.frombuffer(r.stdout, dtype="<f4").copy()


def read_wad_sound(wad_path: str, lump: str) -> tuple[np.ndarray, int]:
    """One Doom-format sound lump (DMX: u16 format=3, u16 rate, u32 count, 8-bit unsigned PCM) -> ([S], rate)."""
    with open(wad_path, "rb") as f:
        data = f.read()
    for name, pos, size in wad_lumps(data):
        if name == lump:
            fmt, rate, count = struct.unpack_from("<HHI", data, pos)
            if fmt != 3:
                break
            # The DMX format pads the samples with 16 bytes on each side.
            pcm = np.frombuffer(
                data, dtype=np.uint8, count=max(0, min(count, size - 8) - 32), offset=pos + 8 + 16
            )
            return (pcm.astype(np.float32) - 128.0) / 128.0, rate
    raise ValueError(f"{wad_path}: no DMX sound lump named {lump}.")


def wad_lumps(data: bytes) -> list[tuple[str, int, int]]:
    """(name, offset, size) of every lump in the directory of a WAD file's bytes."""
    _, num, table = struct.unpack_from("<4sii", data, 0)
    lumps = []
    for i in range(num):
        pos, size, raw = struct.unpack_from("<ii8s", data, table + 16 * i)
        lumps.append((raw.rstrip(b"\0").decode("ascii", errors="replace"), pos, size))
    return lumps


def job_audio(job: dict) -> np.ndarray:
    """The waveform [S] of one job at ``SAMPLE_RATE`` (float32 mono), decoded by the job's ``loader``."""
    loader = job["loader"]
    if loader == "file":
        return load_audio(job["input"])
    if loader == "zip":
        with zipfile.ZipFile(job["input"]) as z:
            data = z.read(job["member"])
        with tempfile.NamedTemporaryFile(suffix=Path(job["member"]).suffix) as f:
            f.write(data)
            f.flush()
            return load_audio(f.name)
    if loader == "wad":
        pcm, rate = read_wad_sound(job["input"], job["lump"])
        return resample_np(pcm, rate)
    with tempfile.TemporaryDirectory(prefix="audiotok_corpus_") as tmp:
        out = os.path.join(tmp, "out.wav")
        if loader == "music21":
            midi = os.path.join(tmp, "in.mid")
            _music21_to_midi(job["input"], midi, job["programs_seed"])
            cmd = ["fluidsynth", "-ni", "-g", "0.5", "-r", str(SAMPLE_RATE), "-F", out, SOUNDFONT, midi]
            # A few corpus pieces carry tempo events that make the render hours long: skip those.
            run_tool(cmd, capture_output=True, check=True, timeout=60)
        elif loader == "cmd":
            cmd = [a.replace("{out}", out) for a in job["cmd"]]
            run_tool(cmd, input=job.get("stdin"), capture_output=True, text=True, check=True, timeout=120)
        else:
            raise ValueError(f"unknown loader {loader}")
        return load_audio(out)


# A spread of General MIDI programs so rendered music is not all piano.
GM_PROGRAMS = [0, 1, 4, 6, 11, 16, 19, 21, 24, 25, 26, 32, 33, 40, 41, 42, 43, 46, 48, 52, 56, 57, 60, 61, 64, 65,
               68, 70, 71, 73, 74, 80, 81, 88, 89, 105]  # fmt: skip


def _music21_to_midi(corpus_path: str, midi_path: str, seed: int, max_measures: int = 40) -> None:
    from music21 import converter, instrument, stream

    score = converter.parse(corpus_path)
    if isinstance(score, stream.Opus):
        score = score.scores[seed % len(score.scores)]
    # Long works would dominate the music hours; their opening measures are enough.
    if isinstance(score, stream.Score) and score.parts:
        try:
            score = score.measures(1, max_measures)
        except Exception:  # noqa: BLE001 - pieces without measures are rendered whole
            pass
    rng = random.Random(seed)
    parts = list(score.parts) if isinstance(score, stream.Score) else [score]
    for part in parts:
        for inst in list(part.recurse().getElementsByClass(instrument.Instrument)):
            part.remove(inst, recurse=True)
        new = instrument.Instrument()
        new.midiProgram = rng.choice(GM_PROGRAMS)
        part.insert(0, new)
    score.write("midi", fp=midi_path)
