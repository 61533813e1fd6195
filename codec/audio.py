"""Audio input for audiotok: load and validate audio files, resample them, hash their content.

Finding the files (folders, globs, list files) is `codec.pipeline.inputs`.

Files are read through soundfile (libsndfile), which recognises a file by its content, not its
extension: a FLAC file named ``.wav`` loads, and a text file named ``.mp3`` is rejected as not audio.
Resampling is soxr's (libsoxr, "HQ"): several times faster than torchaudio's sinc on a CPU, and its
streaming resampler gives, block by block, exactly the samples of one pass over the whole file, so a
long file read in blocks encodes to the same codes as the file loaded whole.

Reading, checking, downmixing and resampling use numpy only (`read_audio`); torch is imported only to
wrap the result as a tensor (`load_audio`, `iter_audio_blocks`), so the tokenize pipeline's reader
threads never enter torch's thread pool, which its encoders keep busy.

Every problem a user's file can have is its own exception class under `AudioError` (a ``ValueError``),
with a one-sentence message that names the file, so that a batch job can record it and go on.
The checks that only need the header (sample rate, channels, duration) run before any sample is read,
so a header claiming an hour-long 64-channel file costs nothing.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

if TYPE_CHECKING:
    import torch

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".opus", ".aiff", ".aif", ".au")
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 768_000
MAX_CHANNELS = 32
CHANNEL_POLICIES = ("downmix", "split", "keep")
RESAMPLE_QUALITY = "HQ"  # soxr's default recipe: 20-bit precision


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


def check_path(path: str | os.PathLike) -> None:
    """Raise `AudioError` if ``path`` is missing, a folder, a link to nowhere, not a regular file or unreadable.

    Cheap (one stat): run it before opening, so that a fifo named .wav is never opened (it would block).
    """
    path = Path(path)
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


def _wav_data_shortfall(f) -> tuple[int, int] | None:
    """For a RIFF/WAVE file whose ``data`` chunk claims more bytes than the file holds: ``(claimed, present)``.

    libsndfile silently reads what is there, so a truncated download or a header claiming a huge length
    would otherwise pass as a shorter file. The sizes 0 and 0xFFFFFFFF are the placeholders streaming
    writers use for "unknown length" and are accepted.
    """
    f.seek(0)
    head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    size = f.seek(0, os.SEEK_END)
    pos = 12
    while pos + 8 <= size:
        f.seek(pos)
        chunk = f.read(8)
        chunk_id, chunk_size = chunk[:4], int.from_bytes(chunk[4:8], "little")
        if chunk_id == b"data":
            present = size - pos - 8
            if chunk_size not in (0, 0xFFFFFFFF) and chunk_size > present:
                return chunk_size, present
            return None
        pos += 8 + chunk_size + (chunk_size & 1)  # chunks are word-aligned
    return None


def _check_header(f, name: str, max_seconds: float | None) -> sf.SoundFile:
    """Open ``f`` (a binary file object) with libsndfile and validate its header; nothing is decoded."""
    try:
        shortfall = _wav_data_shortfall(f)
        f.seek(0)
        handle = sf.SoundFile(f)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise _not_audio(name, e) from None
    except OSError as e:
        raise AudioUnreadableError(f"{name}: cannot be read ({e.strerror or e}); check the file.") from None
    if shortfall is not None:
        handle.close()
        raise NotAudioError(
            f"{name}: its header claims {shortfall[0]} bytes of audio but only {shortfall[1]} are present; "
            "the file is truncated or its header is corrupt."
        )
    problem: AudioError | None = None
    if not MIN_SAMPLE_RATE <= handle.samplerate <= MAX_SAMPLE_RATE:
        problem = SampleRateError(
            f"{name}: sample rate {handle.samplerate} Hz is outside [{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}] Hz; "
            "the header is probably corrupt."
        )
    elif not 1 <= handle.channels <= MAX_CHANNELS:
        problem = ChannelCountError(
            f"{name}: has {handle.channels} channels; at most {MAX_CHANNELS} are supported."
        )
    elif max_seconds is not None and handle.frames > max_seconds * handle.samplerate:
        problem = _too_long(name, handle.frames / handle.samplerate, max_seconds)
    if problem is not None:
        handle.close()
        raise problem
    return handle


def _open(path: Path) -> object:
    name = display_path(path)
    try:
        return open(path, "rb")
    except PermissionError:
        raise AudioUnreadableError(f"{name}: permission denied; make the file readable.") from None
    except OSError as e:
        raise AudioUnreadableError(f"{name}: cannot be opened ({e.strerror or e}); check the file.") from None


def _decode_error(name: str, e: Exception) -> NotAudioError:
    reason = getattr(e, "error_string", None) or str(e)
    return NotAudioError(f"{name}: audio data cannot be decoded ({reason}); the file may be truncated.")


def _read(path: Path, max_seconds: float | None) -> tuple[np.ndarray, int]:
    """Validate the header, then read the samples: ``(data [S, C] float32, sample_rate)``.

    The file is opened by Python and handed to libsndfile as a file object, so names that are not valid
    UTF-8 work too.
    """
    name = display_path(path)
    with _open(path) as f, _check_header(f, name, max_seconds) as handle:
        try:
            return handle.read(dtype="float32", always_2d=True), handle.samplerate  # (S, C)
        except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, OSError) as e:
            raise _decode_error(name, e) from None


@dataclass
class AudioHeader:
    """What a file's header says: frames and rate at the source, channel count."""

    frames: int
    sample_rate: int
    channels: int

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def probe_audio(path: str | os.PathLike, max_seconds: float | None = None) -> AudioHeader:
    """Validate a file's path and header without decoding samples; raises `AudioError` naming it."""
    path = Path(path)
    check_path(path)
    with _open(path) as f, _check_header(f, display_path(path), max_seconds) as handle:
        return AudioHeader(handle.frames, handle.samplerate, handle.channels)


def _too_long(name: str, seconds: float, max_seconds: float) -> AudioTooLongError:
    return AudioTooLongError(
        f"{name}: is {seconds:.1f} s long, over the {max_seconds:g} s limit; raise --max-seconds or split the file."
    )


def _check_channel_policy(channel_policy: str) -> None:
    if channel_policy not in CHANNEL_POLICIES:
        raise ValueError(f"channel_policy must be one of {CHANNEL_POLICIES}, got {channel_policy!r}")


def _mix(data: np.ndarray, channel_policy: str) -> np.ndarray:
    """``[S, C]`` -> ``[S, 1]`` for ``"downmix"`` (the channel mean), else unchanged."""
    if channel_policy != "downmix" or data.shape[1] == 1:
        return data
    mix = data[:, 0].copy()  # column by column: ~20x faster than numpy's mean over a short last axis
    for c in range(1, data.shape[1]):
        mix += data[:, c]
    mix /= data.shape[1]
    return mix[:, None]  # (S, 1)


def resample_audio(data: np.ndarray, orig_sr: int, new_sr: int) -> np.ndarray:
    """Resample float32 frames ``[S, C]`` (or ``[S]``) from ``orig_sr`` to ``new_sr`` with soxr.

    About ``S * new_sr / orig_sr`` frames come out. `StreamResampler` fed the same frames in blocks of
    any size gives exactly this output.
    """
    if orig_sr == new_sr:
        return data
    import soxr

    return soxr.resample(data, orig_sr, new_sr, quality=RESAMPLE_QUALITY)


def _shorter_than_a_sample(name: str, source_sr: int, target_sr: int) -> EmptyAudioError:
    return EmptyAudioError(
        f"{name}: is shorter than one sample at {target_sr} Hz (its rate is {source_sr} Hz); nothing to encode."
    )


def read_audio(
    path: str | os.PathLike,
    target_sr: int | None = None,
    channel_policy: str = "downmix",
    max_seconds: float | None = None,
) -> tuple[np.ndarray, int]:
    """`load_audio` in numpy: ``(wav float32 [C, S] at target_sr, source sample rate)``; no torch."""
    _check_channel_policy(channel_policy)
    path = Path(path)
    name = display_path(path)
    check_path(path)
    data, source_sr = _read(path, max_seconds)  # (S, C)
    if data.shape[0] == 0:
        raise EmptyAudioError(f"{name}: holds no audio samples (0 frames).")
    if not np.isfinite(data).all():
        raise NonFiniteAudioError(f"{name}: contains NaN or infinite samples; the file is corrupt.")
    if max_seconds is not None and data.shape[0] > max_seconds * source_sr:  # the header understated it
        raise _too_long(name, data.shape[0] / source_sr, max_seconds)
    data = _mix(data, channel_policy)
    if target_sr is not None:
        data = resample_audio(data, source_sr, target_sr)
        if data.shape[0] == 0:
            raise _shorter_than_a_sample(name, source_sr, target_sr)
    return np.ascontiguousarray(data.T, dtype=np.float32), source_sr  # (C, S)


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
    import torch

    wav, source_sr = read_audio(path, target_sr, channel_policy, max_seconds)
    return LoadedAudio(
        wav=torch.from_numpy(wav),
        sample_rate=target_sr or source_sr,
        source_sample_rate=source_sr,
        path=Path(path),
    )


class StreamResampler:
    """Resamples a stream of frames ``[S, C]`` block by block (soxr's streaming resampler).

    The concatenated output equals `resample_audio` of the whole stream bit for bit, whatever the block
    sizes: soxr keeps its filter state between blocks and holds back the samples whose right context
    has not arrived yet; `flush` releases them at the end.
    """

    def __init__(self, orig_sr: int, new_sr: int, channels: int):
        import soxr

        self.orig_sr, self.new_sr, self.channels = orig_sr, new_sr, channels
        self.stream = soxr.ResampleStream(
            orig_sr, new_sr, channels, dtype="float32", quality=RESAMPLE_QUALITY
        )
        self.frames_out = 0

    def push(self, block: np.ndarray) -> np.ndarray:
        """float32 frames ``[S, C]`` at the source rate -> the newly complete output ``[S', C]``."""
        out = self.stream.resample_chunk(np.ascontiguousarray(block, dtype=np.float32))
        self.frames_out += out.shape[0]
        return out

    def flush(self) -> np.ndarray:
        """The rest of the output ``[S', C]``, through the end of the stream; call once."""
        out = self.stream.resample_chunk(np.zeros((0, self.channels), np.float32), last=True)
        self.frames_out += out.shape[0]
        return out


def iter_audio_blocks(
    path: str | os.PathLike,
    target_sr: int | None = None,
    channel_policy: str = "downmix",
    max_seconds: float | None = None,
    block_seconds: float = 10.0,
):
    """Read a file block by block: yields float32 tensors ``[C, S_block]`` at ``target_sr`` (C=1 after downmix).

    The same validation as `load_audio` (header first, then NaN/Inf and emptiness per block), and the
    concatenated blocks equal `load_audio`'s waveform exactly, but memory stays at a few blocks whatever
    the file's length. Raises `AudioError` naming the file, possibly mid-stream: a caller must not keep
    anything from a stream that raised.
    """
    import torch

    _check_channel_policy(channel_policy)
    path = Path(path)
    name = display_path(path)
    check_path(path)
    with _open(path) as f, _check_header(f, name, max_seconds) as handle:
        source_sr = handle.samplerate
        out_channels = 1 if channel_policy == "downmix" else handle.channels
        resample = target_sr is not None and target_sr != source_sr
        resampler = StreamResampler(source_sr, target_sr, out_channels) if resample else None
        block_frames = max(1, int(block_seconds * source_sr))
        total = 0
        while True:
            try:
                data = handle.read(block_frames, dtype="float32", always_2d=True)  # (S, C)
            except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, OSError) as e:
                raise _decode_error(name, e) from None
            if data.shape[0] == 0:
                break
            if not np.isfinite(data).all():
                raise NonFiniteAudioError(f"{name}: contains NaN or infinite samples; the file is corrupt.")
            total += data.shape[0]
            if max_seconds is not None and total > max_seconds * source_sr:
                raise _too_long(name, total / source_sr, max_seconds)
            data = _mix(data, channel_policy)  # (S, C')
            out = resampler.push(data) if resampler else data
            if out.shape[0]:
                yield torch.from_numpy(np.ascontiguousarray(out.T, dtype=np.float32))  # (C', S')
        if total == 0:
            raise EmptyAudioError(f"{name}: holds no audio samples (0 frames).")
        if resampler is not None:
            tail = resampler.flush()
            if tail.shape[0]:
                yield torch.from_numpy(np.ascontiguousarray(tail.T, dtype=np.float32))
            elif resampler.frames_out == 0:
                raise _shorter_than_a_sample(name, source_sr, target_sr)


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (the identity of a source for resume, independent of its path)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            h.update(chunk)
    return h.hexdigest()
