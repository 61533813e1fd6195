"""The tokenize pipeline's readers (codec/reader.py): threads == inline reading, in order, without torch."""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest
import soundfile as sf

from codec.audio import load_audio, sha256_file
from codec.pipeline.inputs import scan_inputs
from codec.pipeline.reader import ReadOptions, prepare, read_ahead


@pytest.fixture
def folder(tmp_path, write_tone, write_noise, write_chirp):
    """Mixed rates and channels, a long file, a stored one, and two bad ones."""
    write_tone(tmp_path / "a.wav", seconds=0.4, sample_rate=22050, channels=2)
    write_noise(tmp_path / "b.flac", seconds=0.3, sample_rate=48000)
    write_chirp(tmp_path / "c.wav", seconds=0.2, sample_rate=16000)
    write_tone(tmp_path / "long.wav", seconds=1.5, sample_rate=8000)
    write_noise(tmp_path / "stored.wav", seconds=0.1, seed=3)
    (tmp_path / "text.wav").write_text("not audio")
    sf.write(tmp_path / "nan.wav", np.full(100, np.nan, np.float32), 16000, subtype="FLOAT")
    return tmp_path


def _options(folder, channels: str = "downmix") -> ReadOptions:
    return ReadOptions(
        16000, channels, long_seconds=1.0, skip_hashes=frozenset({sha256_file(folder / "stored.wav")})
    )


def _same(a, b) -> bool:
    def fields(p):
        return p.file, p.sha256, p.stream, p.skipped, p.error

    wavs_equal = (a.wav is None and b.wav is None) or np.array_equal(a.wav, b.wav)
    return wavs_equal and fields(a) == fields(b)


@pytest.mark.parametrize("channels", ["downmix", "split"])
def test_threads_equal_inline_reading_in_order(folder, channels):
    files = scan_inputs([str(folder)]).files
    options = _options(folder, channels)
    inline = list(read_ahead(files, options, jobs=0))
    assert [p.file for p in inline] == files
    by_name = {p.file.relpath: p for p in inline}
    assert by_name["long.wav"].stream and by_name["long.wav"].wav is None
    assert by_name["stored.wav"].skipped == (channels != "split")
    assert "text.wav" in by_name["text.wav"].error and "NaN" in by_name["nan.wav"].error
    wav = by_name["a.wav"].wav  # (C, S) at 16 kHz, the same samples as load_audio
    assert wav.dtype == np.float32 and wav.shape[0] == (2 if channels == "split" else 1)
    assert np.array_equal(wav, load_audio(folder / "a.wav", 16000, channels).wav.numpy())
    threads = list(read_ahead(files * 3, options, jobs=2))  # the window fills and slides
    assert len(threads) == 3 * len(inline) and all(_same(a, b) for a, b in zip(inline * 3, threads))


def test_stopping_early_shuts_the_threads_down(folder):
    files = scan_inputs([str(folder)]).files * 5
    it = read_ahead(files, _options(folder), jobs=2)
    first = next(it)
    it.close()  # must not hang or leave threads behind
    assert first.file == files[0]
    assert not [t for t in threading.enumerate() if t.name.startswith("audiotok-read")]


def test_prepare_never_raises(tmp_path):
    from codec.pipeline.inputs import InputFile

    missing = prepare(InputFile(tmp_path / "missing.wav", "missing.wav"), ReadOptions(16000))
    assert "missing.wav" in missing.error and missing.wav is None
    (tmp_path / "dir.wav").mkdir()
    assert "directory" in prepare(InputFile(tmp_path / "dir.wav", "dir.wav"), ReadOptions(16000)).error


def test_readers_do_not_import_torch(folder):
    """Reader threads never enter torch's thread pool: reading, mixing and resampling are numpy and soxr."""
    code = (
        "import sys; from codec.audio import read_audio; import codec.pipeline.reader; "
        f"wav, sr = read_audio({str(folder / 'a.wav')!r}, 16000); "
        "assert wav.shape[0] == 1 and sr == 22050; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
