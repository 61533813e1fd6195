"""Generator of the bad-input corpus for `audiotok tokenize`: broken files beside valid edge cases.

`make_corpus(root)` writes, under ``root``, at least 25 kinds of bad input (each must be reported in one
line and recorded as a failure) and valid edge cases (each must be stored). Everything is made on the
spot from numpy, soundfile and hand-written headers; nothing is downloaded.

Kinds that cannot exist here are left out and listed in ``Corpus.unsupported`` (a permission-denied file
means nothing to root; a fifo needs POSIX), so a test can say what it did not check.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


@dataclass
class Corpus:
    """What `make_corpus` wrote. Paths are ``bytes`` where the name is not valid UTF-8."""

    root: Path
    bad: dict[str, os.PathLike | bytes] = field(default_factory=dict)  # kind -> path
    good: dict[str, os.PathLike | bytes] = field(default_factory=dict)  # kind -> path
    unsupported: list[str] = field(default_factory=list)  # kinds this machine cannot make


def _tone(seconds: float, sr: int = SR, channels: int = 1) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return np.stack([0.4 * np.sin(2 * np.pi * 330 * (c + 1) * t) for c in range(channels)], axis=1)


def wav_bytes(
    sample_rate: int = SR,
    channels: int = 1,
    num_frames: int = 1600,
    bits: int = 16,
    format_tag: int = 1,
    data: bytes | None = None,
    data_size: int | None = None,
    fmt_size: int | None = None,
) -> bytes:
    """A RIFF/WAVE file with every header field settable (to make lies); samples are a quiet ramp."""
    block = max(1, channels * bits // 8)
    if data is None:
        data = (np.arange(num_frames * max(channels, 1)) % 200 - 100).astype("<i2").tobytes()
        data = data[: num_frames * block] if bits == 16 else bytes(num_frames * block)
    fmt = struct.pack(
        "<HHIIHH", format_tag, channels, sample_rate, (sample_rate * block) & 0xFFFFFFFF, block & 0xFFFF, bits
    )
    size = len(data) if data_size is None else data_size
    body = (
        b"WAVE" + b"fmt " + struct.pack("<I", fmt_size or len(fmt)) + fmt + b"data" + struct.pack("<I", size)
    )
    return b"RIFF" + struct.pack("<I", len(body) + len(data)) + body + data


def _float_wav(path: Path, value: float) -> None:
    data = _tone(0.2)
    data[100] = value
    sf.write(path, data, SR, subtype="FLOAT")


def _write_bad(root: Path, corpus: Corpus) -> None:
    bad = root / "bad"
    bad.mkdir(parents=True)
    rng = np.random.default_rng(0)
    valid = bad / "_tmp.wav"
    sf.write(valid, _tone(0.5), SR)
    valid_bytes = valid.read_bytes()
    valid.unlink()
    flac = bad / "_tmp.flac"
    sf.write(flac, _tone(0.5), SR)
    flac_bytes = flac.read_bytes()
    flac.unlink()

    files: dict[str, bytes] = {
        "empty": b"",
        "truncated_header": valid_bytes[:30],
        "header_only": wav_bytes(num_frames=0),
        "random_bytes": rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "text_as_mp3": b"This is a text file, not an MP3.\n" * 20,
        "html_as_ogg": b"<!doctype html><html><body>404 Not Found</body></html>\n",
        "gzip_as_wav": b"\x1f\x8b\x08\x00" + bytes(200),
        "rate_1hz": wav_bytes(sample_rate=1),
        "rate_10mhz": wav_bytes(sample_rate=10_000_000),
        "rate_0hz": wav_bytes(sample_rate=0),
        "zero_channels": wav_bytes(channels=0),
        "huge_channels": wav_bytes(channels=65535, num_frames=1),
        "huge_length_claim": wav_bytes(num_frames=10, data_size=0xFFFFFFF0),
        "corrupt_fmt_tag": wav_bytes(format_tag=0x7777),
        "corrupt_fmt_size": wav_bytes(fmt_size=2),
        "zero_bits_per_sample": wav_bytes(bits=0),
        "riff_not_wave": b"RIFF" + struct.pack("<I", 100) + b"AVI " + bytes(100),
        "flac_magic_only": b"fLaC" + bytes(60),
        "flac_truncated": flac_bytes[: len(flac_bytes) // 8],
        "zero_length_flac": b"",
    }
    names = {"text_as_mp3": "text.mp3", "html_as_ogg": "page.ogg", "zero_length_flac": "zero.flac"}
    for kind, data in files.items():
        path = bad / names.get(kind, f"{kind}.wav")
        path.write_bytes(data)
        corpus.bad[kind] = path
    # Real files with bad content: NaN / Inf samples, too many channels, too long for --max-seconds.
    for kind, value in (("nan_samples", np.nan), ("inf_samples", np.inf)):
        _float_wav(bad / f"{kind}.wav", value)
        corpus.bad[kind] = bad / f"{kind}.wav"
    sf.write(bad / "64_channels.wav", np.zeros((160, 64)), SR)
    corpus.bad["64_channels"] = bad / "64_channels.wav"
    sf.write(bad / "too_long.wav", np.zeros((SR * 3, 1)), SR)  # tokenized with --max-seconds 2
    corpus.bad["too_long"] = bad / "too_long.wav"
    # A folder named like a file; links that lead nowhere.
    (bad / "folder.wav").mkdir()
    sf.write(bad / "folder.wav" / "inside.wav", _tone(0.1), SR)  # not scanned: folder.wav is reported
    corpus.bad["directory_named_wav"] = bad / "folder.wav"
    os.symlink(bad / "loop_b.wav", bad / "loop_a.wav")
    os.symlink(bad / "loop_a.wav", bad / "loop_b.wav")
    corpus.bad["symlink_loop"] = bad / "loop_a.wav"
    corpus.bad["symlink_loop_b"] = bad / "loop_b.wav"
    os.symlink(bad / "does_not_exist.wav", bad / "dangling.wav")
    corpus.bad["dangling_symlink"] = bad / "dangling.wav"
    non_utf8 = os.fsencode(bad) + b"/bad_name_\xff\xfe.wav"
    with open(non_utf8, "wb") as f:
        f.write(b"not audio at all" * 10)
    corpus.bad["non_utf8_name_not_audio"] = non_utf8
    if hasattr(os, "mkfifo"):
        os.mkfifo(bad / "fifo.wav")
        corpus.bad["fifo"] = bad / "fifo.wav"
    else:
        corpus.unsupported.append("fifo")
    locked = bad / "no_permission.wav"
    sf.write(locked, _tone(0.1), SR)
    os.chmod(locked, 0)
    if os.access(locked, os.R_OK):  # root reads anything: the kind cannot be made here
        locked.unlink()
        corpus.unsupported.append("permission_denied")
    else:
        corpus.bad["permission_denied"] = locked


def _write_good(root: Path, corpus: Corpus) -> None:
    good = root / "good"
    good.mkdir(parents=True)
    cases = {
        "silence": ("silence.wav", np.zeros((SR // 2, 1)), SR, {}),
        "10ms_clip": ("clip_10ms.wav", _tone(0.01), SR, {}),
        "pcm_u8": ("pcm8.wav", _tone(0.3), SR, {"subtype": "PCM_U8"}),
        "pcm_24": ("pcm24.wav", _tone(0.3), SR, {"subtype": "PCM_24"}),
        "float32": ("float.wav", _tone(0.3), SR, {"subtype": "FLOAT"}),
        "96k_stereo": ("hires_96k_stereo.wav", _tone(0.3, 96000, 2), 96000, {}),
        "8k_mono": ("phone_8k.wav", _tone(0.3, 8000), 8000, {}),
        "flac_named_wav": ("really_flac.wav", _tone(0.3), SR, {"format": "FLAC"}),
        "ogg": ("vorbis.ogg", _tone(0.3), SR, {"subtype": "VORBIS"}),
        "odd_length": ("odd.flac", _tone(0.3337, 22050), 22050, {}),
    }
    for kind, (name, data, sr, kwargs) in cases.items():
        sf.write(good / name, data, sr, **kwargs)
        corpus.good[kind] = good / name
    non_utf8 = os.fsencode(good) + b"/caf\xe9_latin1.wav"
    sf.write(good / "_tmp.wav", _tone(0.2), SR)
    os.rename(good / "_tmp.wav", non_utf8)
    corpus.good["non_utf8_name"] = non_utf8


def make_corpus(root: str | os.PathLike) -> Corpus:
    """Write the bad and good inputs under ``root/bad`` and ``root/good``; return what was written."""
    corpus = Corpus(Path(root))
    _write_bad(corpus.root, corpus)
    _write_good(corpus.root, corpus)
    return corpus
