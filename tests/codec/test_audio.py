"""Audio loading, validation, and input expansion (codec/audio.py)."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest
import soundfile as sf

from codec.audio import (
    AudioError,
    AudioIsDirectoryError,
    AudioNotFoundError,
    AudioTooLongError,
    AudioUnreadableError,
    ChannelCountError,
    EmptyAudioError,
    NonFiniteAudioError,
    NotAudioError,
    SampleRateError,
    iter_audio_blocks,
    load_audio,
    sha256_file,
)
from codec.pipeline.inputs import iter_audio_files, scan_inputs


def _wav_header(path, sample_rate: int, channels: int, num_frames: int = 100, bits: int = 16) -> None:
    """A PCM wav with an arbitrary (possibly absurd) header and silent samples."""
    block = channels * bits // 8
    data = b"\0" * (num_frames * block)
    fmt = struct.pack("<HHIIHH", 1, channels, sample_rate, sample_rate * block, block, bits)
    body = (
        b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    )
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def test_load_shapes_and_values(tmp_path, write_tone):
    path = write_tone(tmp_path / "a.wav", seconds=0.25, sample_rate=16000, subtype="FLOAT")
    audio = load_audio(path)
    assert audio.wav.shape == (1, 4000) and audio.wav.dtype.is_floating_point
    assert audio.sample_rate == audio.source_sample_rate == 16000 and audio.path == path
    np.testing.assert_allclose(audio.wav[0].numpy(), sf.read(path, dtype="float32")[0], atol=1e-7)


def test_flac_named_wav_loads_by_content(tmp_path, write_chirp):
    path = write_chirp(tmp_path / "really_flac.wav", format="FLAC")
    assert sf.info(path).format == "FLAC"
    assert load_audio(path).wav.shape == (1, 8000)


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_24", "PCM_32"])
def test_8_and_24_bit_pcm(tmp_path, write_tone, subtype):
    path = write_tone(tmp_path / f"{subtype}.wav", subtype=subtype)
    wav = load_audio(path).wav
    assert wav.shape == (1, 8000)
    assert abs(float(wav.abs().max()) - 0.5) < 0.02  # scaled to [-1, 1] whatever the bit depth


@pytest.mark.parametrize(
    "ext,kwargs",
    [
        pytest.param(
            ext,
            kwargs,
            marks=pytest.mark.skipif(
                ext[1:].upper() not in sf.available_formats(),
                reason=f"this libsndfile has no {ext[1:].upper()} support",
            ),
        )
        for ext, kwargs in [(".ogg", {"subtype": "VORBIS"}), (".mp3", {}), (".aiff", {})]
    ],
)
def test_other_containers(tmp_path, write_tone, ext, kwargs):
    path = write_tone(tmp_path / f"a{ext}", seconds=0.5, **kwargs)
    audio = load_audio(path, target_sr=16000)
    assert audio.wav.shape[0] == 1 and abs(audio.wav.shape[1] - 8000) < 2000  # mp3 adds codec padding


def test_resample_rate_and_length(tmp_path, write_tone):
    path = write_tone(tmp_path / "a.wav", seconds=0.5, sample_rate=44100, freq=300.0)
    audio = load_audio(path, target_sr=16000)
    assert audio.sample_rate == 16000 and audio.source_sample_rate == 44100
    assert audio.wav.shape == (1, 8000)
    spectrum = np.abs(np.fft.rfft(audio.wav[0].numpy()))
    assert abs(np.argmax(spectrum) * 16000 / 8000 - 300.0) <= 2  # the tone survives at its frequency


def test_shorter_than_one_sample_after_resampling(tmp_path):
    path = tmp_path / "one.wav"
    sf.write(path, np.full(1, 0.1, np.float32), 48000, subtype="FLOAT")
    assert load_audio(path).wav.shape == (1, 1)  # kept at its own rate
    with pytest.raises(EmptyAudioError, match="one.wav: is shorter than one sample at 16000 Hz"):
        load_audio(path, target_sr=16000)
    with pytest.raises(EmptyAudioError, match="one.wav: is shorter than one sample at 16000 Hz"):
        list(iter_audio_blocks(path, 16000))


def test_stereo_downmix_split_keep(tmp_path, write_tone):
    path = write_tone(tmp_path / "st.wav", channels=2, subtype="FLOAT")
    stereo = sf.read(path, dtype="float32", always_2d=True)[0].T  # (2, S)
    down = load_audio(path, channel_policy="downmix").wav
    split = load_audio(path, channel_policy="split").wav
    assert down.shape == (1, 8000) and split.shape == (2, 8000)
    np.testing.assert_allclose(split.numpy(), stereo, atol=1e-7)
    np.testing.assert_allclose(down[0].numpy(), stereo.mean(0), atol=1e-6)
    assert load_audio(path, channel_policy="keep").wav.shape == (2, 8000)
    with pytest.raises(ValueError):
        load_audio(path, channel_policy="left")


def test_missing_and_directory(tmp_path):
    with pytest.raises(AudioNotFoundError, match="nope.wav"):
        load_audio(tmp_path / "nope.wav")
    (tmp_path / "x.wav").mkdir()
    with pytest.raises(AudioIsDirectoryError, match="x.wav"):
        load_audio(tmp_path / "x.wav")
    (tmp_path / "dangling.wav").symlink_to(tmp_path / "gone.wav")
    with pytest.raises(AudioNotFoundError, match="dangling"):
        load_audio(tmp_path / "dangling.wav")
    (tmp_path / "loop1.wav").symlink_to(tmp_path / "loop2.wav")
    (tmp_path / "loop2.wav").symlink_to(tmp_path / "loop1.wav")
    with pytest.raises(AudioError, match="loop1.wav"):
        load_audio(tmp_path / "loop1.wav")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_permission_denied(tmp_path, write_tone):
    path = write_tone(tmp_path / "locked.wav")
    path.chmod(0)
    with pytest.raises(AudioUnreadableError, match="locked.wav"):
        load_audio(path)


def test_not_audio(tmp_path):
    (tmp_path / "text.mp3").write_text("this is not audio\n" * 20)
    (tmp_path / "random.wav").write_bytes(np.random.default_rng(0).bytes(4000))
    for name in ("text.mp3", "random.wav"):
        with pytest.raises(NotAudioError, match=name):
            load_audio(tmp_path / name)


def test_empty(tmp_path):
    sf.write(tmp_path / "empty.wav", np.zeros((0, 1)), 16000)
    with pytest.raises(EmptyAudioError, match="empty.wav"):
        load_audio(tmp_path / "empty.wav")
    (tmp_path / "zero_bytes.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="zero_bytes.wav"):
        load_audio(tmp_path / "zero_bytes.wav")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite(tmp_path, bad):
    data = np.zeros(1000, dtype=np.float32)
    data[500] = bad
    sf.write(tmp_path / "nf.wav", data, 16000, subtype="FLOAT")
    with pytest.raises(NonFiniteAudioError, match="nf.wav"):
        load_audio(tmp_path / "nf.wav")


@pytest.mark.parametrize("rate", [1, 999, 10_000_000])
def test_absurd_sample_rate(tmp_path, rate):
    _wav_header(tmp_path / "rate.wav", rate, 1)
    with pytest.raises(AudioError, match="rate.wav") as info:
        load_audio(tmp_path / "rate.wav")
    # libsndfile itself refuses some absurd headers; either way it is a clear AudioError
    assert isinstance(info.value, (SampleRateError, NotAudioError))


def test_channel_count(tmp_path):
    _wav_header(tmp_path / "c64.wav", 16000, 64)
    with pytest.raises(ChannelCountError, match="c64.wav"):
        load_audio(tmp_path / "c64.wav")
    _wav_header(tmp_path / "c0.wav", 16000, 0)
    with pytest.raises(AudioError, match="c0.wav"):
        load_audio(tmp_path / "c0.wav")


def test_too_long(tmp_path, write_tone):
    path = write_tone(tmp_path / "long.wav", seconds=1.0)
    with pytest.raises(AudioTooLongError, match="long.wav"):
        load_audio(path, max_seconds=0.5)
    assert load_audio(path, max_seconds=2.0).wav.shape[-1] == 16000


def test_errors_are_value_errors_with_one_sentence(tmp_path):
    with pytest.raises(ValueError) as info:
        load_audio(tmp_path / "missing.flac")
    message = str(info.value)
    assert "missing.flac" in message and "\n" not in message


def test_sha256_depends_on_content_only(tmp_path, write_tone, write_noise):
    a = write_tone(tmp_path / "a.wav")
    b = tmp_path / "b.wav"
    b.write_bytes(a.read_bytes())
    c = write_noise(tmp_path / "c.wav")
    assert sha256_file(a) == sha256_file(b) != sha256_file(c)
    assert len(sha256_file(a)) == 64


def test_scan_folders_globs_files(tmp_path, write_tone):
    root = tmp_path / "corpus"
    for rel in ("b.wav", "a.flac", "sub/c.ogg", "sub/deep/d.WAV"):
        write_tone(root / rel, format="WAV")
    (root / "notes.txt").write_text("not listed")
    files = iter_audio_files([str(root)])
    assert [f.relative_to(root).as_posix() for f in files] == [
        "a.flac",
        "b.wav",
        "sub/c.ogg",
        "sub/deep/d.WAV",
    ]
    # duplicates collapse; explicit files are kept whatever their extension; globs expand
    scan = scan_inputs([str(root), str(root / "b.wav"), str(root / "notes.txt"), str(root / "sub" / "*.ogg")])
    assert [f.relpath for f in scan.files] == ["a.flac", "b.wav", "notes.txt", "sub/c.ogg", "sub/deep/d.WAV"]
    assert scan.unmatched == []
    rel = {f.relpath for f in scan_inputs([str(tmp_path / "corpus" / "**" / "*.ogg")]).files}
    assert rel == {"sub/c.ogg"}


def test_scan_reports_unmatched(tmp_path):
    (tmp_path / "empty_dir").mkdir()
    inputs = [str(tmp_path / "nothing.wav"), str(tmp_path / "*.flac"), str(tmp_path / "empty_dir")]
    assert scan_inputs(inputs).unmatched == inputs
    with pytest.raises(AudioNotFoundError, match="nothing.wav"):
        iter_audio_files(inputs)
    unmatched: list[str] = []
    assert iter_audio_files(inputs, unmatched=unmatched) == [] and unmatched == inputs


def test_walk_survives_symlink_loops(tmp_path, write_tone):
    root = tmp_path / "root"
    write_tone(root / "a.wav")
    (root / "self").symlink_to(root)  # a folder loop
    (root / "l1.wav").symlink_to(root / "l2.wav")  # a file loop: listed, so that loading reports it
    (root / "l2.wav").symlink_to(root / "l1.wav")
    names = sorted(p.name for p in iter_audio_files([str(root)]))
    assert names == ["a.wav", "l1.wav", "l2.wav"]
    with pytest.raises(AudioError):
        load_audio(root / "l1.wav")


def test_wav_header_claiming_more_data_than_present_is_rejected(tmp_path, write_tone):
    """libsndfile would read the shorter file silently; a truncated or lying header is reported."""
    path = write_tone(tmp_path / "a.wav", seconds=0.5)
    data = path.read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
    with pytest.raises(NotAudioError, match=r"cut.wav: its header claims \d+ bytes .* truncated"):
        load_audio(tmp_path / "cut.wav")
    streaming = bytearray(data)
    at = data.index(b"data") + 4
    streaming[at : at + 4] = b"\xff\xff\xff\xff"  # "unknown length", as streaming writers leave it
    (tmp_path / "stream.wav").write_bytes(bytes(streaming))
    assert load_audio(tmp_path / "stream.wav").num_samples == 8000


def test_folder_named_like_audio_is_reported_not_searched(tmp_path, write_tone):
    write_tone(tmp_path / "root" / "a.wav")
    write_tone(tmp_path / "root" / "x.wav" / "inside.wav")
    scan = scan_inputs([str(tmp_path / "root")])
    assert [f.relpath for f in scan.files] == ["a.wav", "x.wav"]
    with pytest.raises(AudioIsDirectoryError, match="x.wav: is a directory"):
        load_audio(scan.files[1].path)


def test_list_files(tmp_path, write_tone):
    from codec.pipeline.inputs import InputListError, read_input_list

    write_tone(tmp_path / "d" / "a.wav")
    write_tone(tmp_path / "d" / "sub" / "b.flac")
    write_tone(tmp_path / "elsewhere" / "c.wav")
    (tmp_path / "d" / "list.txt").write_text(
        f"# comment\na.wav\n\nsub\n{tmp_path / 'elsewhere' / 'c.wav'}\nnope.wav\n"
    )
    entries = read_input_list(tmp_path / "d" / "list.txt")
    assert [e.relpath for e in entries][:2] == ["a.wav", "sub"]
    scan = scan_inputs(["@" + str(tmp_path / "d" / "list.txt")])
    outside = str(tmp_path / "elsewhere" / "c.wav").lstrip("/")  # absolute, outside the list's folder
    assert sorted(f.relpath for f in scan.files) == sorted(["a.wav", outside, "sub/b.flac"])
    assert scan.unmatched == [str(tmp_path / "d" / "nope.wav")]
    (tmp_path / "d" / "rows.jsonl").write_text('{"path": "a.wav", "caption": "x"}\n{"path": 3}\n')
    with pytest.raises(InputListError, match="rows.jsonl: line 2"):
        scan_inputs([], lists=[str(tmp_path / "d" / "rows.jsonl")])
    with pytest.raises(InputListError, match="missing.txt"):
        scan_inputs(["@" + str(tmp_path / "missing.txt")])


def test_probe_reads_only_the_header(tmp_path, write_tone):
    from codec.audio import probe_audio

    header = probe_audio(write_tone(tmp_path / "a.flac", seconds=0.25, sample_rate=22050, channels=2))
    assert (header.frames, header.sample_rate, header.channels) == (round(0.25 * 22050), 22050, 2)
    with pytest.raises(AudioTooLongError):
        probe_audio(tmp_path / "a.flac", max_seconds=0.1)
