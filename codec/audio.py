"""Audio input for audiotok: find audio files, load and validate them, hash their content.

Files are read through soundfile (libsndfile), which recognises a file by its content, not its
extension: a FLAC file named ``.wav`` loads, and a text file named ``.mp3`` is rejected as not audio.
torchaudio >= 2.9 reads files only through torchcodec, so torchaudio is used here for resampling only.

Every problem a user's file can have is its own exception class under `AudioError` (a ``ValueError``),
with a one-sentence message that names the file, so that a batch job can record it and go on.
The checks that only need the header (sample rate, channels, duration) run before any sample is read,
so a header claiming an hour-long 64-channel file costs nothing.
"""

from __future__ import annotations

import glob
import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".opus", ".aiff", ".aif", ".au")
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 768_000
MAX_CHANNELS = 32
CHANNEL_POLICIES = ("downmix", "split", "keep")


class AudioError(ValueError):
    """A user's audio file cannot be used; the message names the file and the reason."""


class AudioNotFoundError(AudioError):
    """The path does not exist (or is a dangling or looping symlink)."""


class AudioUnreadableError(AudioError):
    """The file exists but cannot be opened (permissions, I/O error)."""


class AudioIsDirectoryError(AudioError):
    """The path is a directory, not a file."""


class NotAudioError(AudioError):
    """libsndfile cannot parse the file as audio."""


class EmptyAudioError(AudioError):
    """The file holds no samples."""


class NonFiniteAudioError(AudioError):
    """The file holds NaN or infinite samples."""


class SampleRateError(AudioError):
    """The header's sample rate is outside [MIN_SAMPLE_RATE, MAX_SAMPLE_RATE]."""


class ChannelCountError(AudioError):
    """The file has no channels or more than MAX_CHANNELS."""


class AudioTooLongError(AudioError):
    """The file is longer than the configured limit."""


@dataclass
class LoadedAudio:
    """A loaded file. wav: float32 ``[C, S]`` at ``sample_rate`` (C=1 after downmix)."""

    wav: torch.Tensor
    sample_rate: int
    source_sample_rate: int
    path: Path

    @property
    def num_samples(self) -> int:
        return self.wav.shape[-1]

    @property
    def seconds(self) -> float:
        return self.num_samples / self.sample_rate


def display_path(path: str | os.PathLike) -> str:
    """The path as printable text, even for names that are not valid UTF-8."""
    return os.fsdecode(path).encode("utf-8", "backslashreplace").decode("utf-8")


def _check_path(path: Path) -> None:
    name = display_path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise AudioNotFoundError(f"{name}: is a dangling symlink; point it at an audio file.") from None
        raise AudioNotFoundError(f"{name}: no such file; check the path.") from None
    except OSError as e:  # ELOOP (symlink loop), ENAMETOOLONG, EACCES on a parent folder...
        raise AudioUnreadableError(f"{name}: cannot be opened ({e.strerror}); check the path.") from None
    if stat.S_ISDIR(st.st_mode):
        raise AudioIsDirectoryError(f"{name}: is a directory, not an audio file; pass it as a folder input.")
    if not stat.S_ISREG(st.st_mode):
        raise NotAudioError(f"{name}: is not a regular file (a device, fifo or socket); pass an audio file.")
    if not os.access(path, os.R_OK):
        raise AudioUnreadableError(f"{name}: permission denied; make the file readable.")


def _not_audio(name: str, error: Exception) -> NotAudioError:
    reason = getattr(error, "error_string", None) or str(error)
    if (
        "does not exist" in reason or "Format not recognised" in reason
    ):  # libsndfile's words for "unknown format"
        reason = "format not recognised"
    return NotAudioError(f"{name}: is not a readable audio file ({reason}).")


def _read(path: Path, max_seconds: float | None) -> tuple[np.ndarray, int]:
    """Validate the header, then read the samples: ``(data [S, C] float32, sample_rate)``.

    The file is opened by Python and handed to libsndfile as a file object, so names that are not valid
    UTF-8 work too.
    """
    name = display_path(path)
    try:
        f = open(path, "rb")
    except PermissionError:
        raise AudioUnreadableError(f"{name}: permission denied; make the file readable.") from None
    except OSError as e:
        raise AudioUnreadableError(f"{name}: cannot be opened ({e.strerror or e}); check the file.") from None
    with f:
        try:
            info = sf.info(f)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
            raise _not_audio(name, e) from None
        except OSError as e:
            raise AudioUnreadableError(
                f"{name}: cannot be read ({e.strerror or e}); check the file."
            ) from None
        if not MIN_SAMPLE_RATE <= info.samplerate <= MAX_SAMPLE_RATE:
            raise SampleRateError(
                f"{name}: sample rate {info.samplerate} Hz is outside [{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}] Hz; "
                "the header is probably corrupt."
            )
        if not 1 <= info.channels <= MAX_CHANNELS:
            raise ChannelCountError(
                f"{name}: has {info.channels} channels; at most {MAX_CHANNELS} are supported."
            )
        if max_seconds is not None and info.frames > max_seconds * info.samplerate:
            raise _too_long(name, info.frames / info.samplerate, max_seconds)
        try:
            f.seek(0)
            return sf.read(f, dtype="float32", always_2d=True)  # (S, C)
        except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, OSError) as e:
            reason = getattr(e, "error_string", None) or str(e)
            raise NotAudioError(
                f"{name}: audio data cannot be decoded ({reason}); the file may be truncated."
            ) from None


def _too_long(name: str, seconds: float, max_seconds: float) -> AudioTooLongError:
    return AudioTooLongError(
        f"{name}: is {seconds:.1f} s long, over the {max_seconds:g} s limit; raise --max-seconds or split the file."
    )


def load_audio(
    path: str | os.PathLike,
    target_sr: int | None = None,
    channel_policy: str = "downmix",
    max_seconds: float | None = None,
) -> LoadedAudio:
    """Load an audio file as float32 ``[C, S]``, validated and resampled to ``target_sr``.

    channel_policy: ``"downmix"`` averages channels to ``[1, S]``; ``"split"`` and ``"keep"`` keep
    ``[C, S]`` (the caller of ``"split"`` makes one item per channel).
    Raises a subclass of `AudioError` naming the file for anything wrong with it.
    """
    if channel_policy not in CHANNEL_POLICIES:
        raise ValueError(f"channel_policy must be one of {CHANNEL_POLICIES}, got {channel_policy!r}")
    path = Path(path)
    name = display_path(path)
    _check_path(path)
    data, source_sr = _read(path, max_seconds)
    if data.shape[0] == 0:
        raise EmptyAudioError(f"{name}: holds no audio samples (0 frames).")
    if not np.isfinite(data).all():
        raise NonFiniteAudioError(f"{name}: contains NaN or infinite samples; the file is corrupt.")
    if max_seconds is not None and data.shape[0] > max_seconds * source_sr:  # the header understated it
        raise _too_long(name, data.shape[0] / source_sr, max_seconds)
    wav = torch.from_numpy(np.ascontiguousarray(data.T))  # (C, S)
    if channel_policy == "downmix" and wav.shape[0] > 1:
        wav = wav.mean(dim=0, keepdim=True)  # (1, S)
    sample_rate = source_sr
    if target_sr is not None and target_sr != source_sr:
        import torchaudio.functional as AF

        wav = AF.resample(wav, source_sr, target_sr)
        sample_rate = target_sr
    return LoadedAudio(
        wav=wav.float().contiguous(), sample_rate=sample_rate, source_sample_rate=source_sr, path=path
    )


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (the identity of a source for resume, independent of its path)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class InputFile:
    """One file found from the inputs; relpath is relative to the folder or glob root it came from."""

    path: Path
    relpath: str


@dataclass
class InputScan:
    """What the inputs expanded to: files (sorted, deduplicated) and inputs that matched nothing."""

    files: list[InputFile] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)


def _is_audio_name(name: str) -> bool:
    return name.lower().endswith(AUDIO_EXTENSIONS)


def _walk(root: Path) -> list[Path]:
    """Audio files under ``root``, following symlinks but visiting each real folder once (loop-safe).

    Entries with an audio extension that are not folders (including dangling or looping symlinks) are
    returned, so that loading them reports the problem instead of silently dropping them.
    """
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
        except OSError:
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:
            continue
        seen.add(key)
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue  # unreadable folder: its files cannot be listed, let alone read
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError:
                is_dir = False
            if is_dir:
                stack.append(Path(entry.path))
            elif _is_audio_name(entry.name):
                found.append(Path(entry.path))
    return found


def _glob_root(pattern: str) -> Path:
    """The folder part of a glob before its first wildcard (relpaths are taken from there)."""
    parts = Path(pattern).parts
    static = []
    for part in parts:
        if glob.has_magic(part):
            break
        static.append(part)
    return Path(*static) if static else Path(".")


def scan_inputs(inputs: list[str]) -> InputScan:
    """Expand files, folders (recursive, audio extensions only) and globs into a sorted file list.

    A file named explicitly is kept whatever its extension (it is read by content). Duplicates (the same
    real file reached twice) are kept once. Inputs that match nothing go to ``unmatched``.
    """
    scan = InputScan()
    candidates: list[InputFile] = []
    for spec in inputs:
        path = Path(spec)
        if os.path.isdir(path):
            found = [InputFile(p, p.relative_to(path).as_posix()) for p in _walk(path)]
        elif os.path.lexists(path):
            found = [InputFile(path, path.name)]
        elif glob.has_magic(spec):
            root = _glob_root(spec)
            found = []
            for m in sorted(glob.glob(spec, recursive=True)):
                mp = Path(m)
                if os.path.isdir(mp):
                    found += [InputFile(p, p.relative_to(root).as_posix()) for p in _walk(mp)]
                else:
                    found.append(InputFile(mp, mp.relative_to(root).as_posix()))
        else:
            found = []
        if not found:
            scan.unmatched.append(spec)  # missing path, empty folder, or a glob matching nothing
        candidates += found
    seen: set[str] = set()
    for item in sorted(candidates, key=lambda c: os.fsencode(c.path)):
        key = os.path.realpath(item.path)
        if key not in seen:
            seen.add(key)
            scan.files.append(item)
    return scan


def iter_audio_files(inputs: list[str], unmatched: list[str] | None = None) -> list[Path]:
    """Files from files, folders and globs, sorted and deduplicated.

    Inputs that match nothing are appended to ``unmatched`` when given; otherwise they raise
    `AudioNotFoundError`, so that nothing is silently dropped.
    """
    scan = scan_inputs(inputs)
    if unmatched is not None:
        unmatched.extend(scan.unmatched)
    elif scan.unmatched:
        shown = ", ".join(display_path(s) for s in scan.unmatched)
        raise AudioNotFoundError(f"{shown}: matched no audio files; check the paths.")
    return [f.path for f in scan.files]
