"""Pure parts of the corpus builder: split by source, clip cutting, silence handling, manifest round trip."""

import json
import multiprocessing as mp
import os
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

from codec.data import corpus, decode, sources
from codec.data.corpus import SAMPLE_RATE
from codec.data.decode import run_tool
from codec.data.sources import stages


def _tone(seconds: float, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (amp * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def test_split_is_deterministic_and_roughly_90_5_5():
    ids = [f"/usr/share/pkg/file_{i}.ogg" for i in range(4000)]
    first = [corpus.split_for_source(i) for i in ids]
    assert first == [corpus.split_for_source(i) for i in ids]
    counts = {s: first.count(s) / len(ids) for s in corpus.SPLITS}
    assert 0.87 < counts["train"] < 0.93
    assert 0.03 < counts["valid"] < 0.07 and 0.03 < counts["test"] < 0.07


def test_clips_of_one_source_share_a_split(tmp_path):
    src = tmp_path / "long.wav"
    corpus.write_wav(src, _tone(25.0))
    job = {"stage": "t", "kind": "sfx", "package": "p", "license": "MIT", "source_id": str(src),
           "loader": "file", "input": str(src), "out": str(tmp_path / "out")}  # fmt: skip
    rows = corpus.process_job(job)
    assert len(rows) == 3
    assert {r["split"] for r in rows} == {corpus.split_for_source(str(src))}
    for r in rows:
        wav, sr = corpus.read_wav(tmp_path / "out" / r["path"])
        assert sr == SAMPLE_RATE and abs(wav.size / sr - r["seconds"]) < 1e-3


def test_cut_clips_equal_pieces_and_short_audio():
    pieces = corpus.cut_clips(np.zeros(int(25 * SAMPLE_RATE), np.float32))
    assert len(pieces) == 3
    assert all(p.size <= 10 * SAMPLE_RATE for p in pieces)
    assert sum(p.size for p in pieces) == 25 * SAMPLE_RATE
    assert max(p.size for p in pieces) - min(p.size for p in pieces) <= 1
    assert len(corpus.cut_clips(np.zeros(3 * SAMPLE_RATE, np.float32))) == 1  # short stays whole
    assert corpus.cut_clips(np.zeros(int(0.4 * SAMPLE_RATE), np.float32)) == []  # under 0.5 s dropped


def test_silence_detection_and_trim():
    assert corpus.is_silent(np.zeros(SAMPLE_RATE, np.float32))
    assert corpus.is_silent(1e-4 * np.random.default_rng(0).standard_normal(SAMPLE_RATE).astype(np.float32))
    assert not corpus.is_silent(_tone(1.0))
    padded = np.concatenate(
        [np.zeros(SAMPLE_RATE, np.float32), _tone(1.0), np.zeros(SAMPLE_RATE, np.float32)]
    )
    trimmed = corpus.trim_silence(padded)
    assert SAMPLE_RATE <= trimmed.size <= int(1.2 * SAMPLE_RATE)
    assert corpus.trim_silence(np.zeros(SAMPLE_RATE, np.float32)).size == 0


def test_silent_source_gives_no_rows(tmp_path):
    src = tmp_path / "quiet.wav"
    corpus.write_wav(src, np.zeros(2 * SAMPLE_RATE, np.float32))
    job = {"stage": "t", "kind": "sfx", "package": "p", "license": "MIT", "source_id": "q",
           "loader": "file", "input": str(src), "out": str(tmp_path / "out")}  # fmt: skip
    assert corpus.process_job(job) == []


def test_wav_round_trip_and_resample(tmp_path):
    wav = _tone(0.5)
    corpus.write_wav(tmp_path / "a.wav", wav)
    back, sr = corpus.read_wav(tmp_path / "a.wav")
    assert sr == SAMPLE_RATE and np.max(np.abs(back - wav)) < 1e-4
    assert decode.resample_np(np.zeros(48000, np.float32), 48000).size == SAMPLE_RATE


def test_manifest_round_trip_skips_partial_line(tmp_path):
    rows = [{"path": f"speech/x/{s}/a.wav", "kind": k, "split": s, "seconds": 1.5, "text": "héllo"}
            for k in ("speech", "music") for s in corpus.SPLITS]  # fmt: skip
    corpus.append_rows(tmp_path / corpus.MANIFEST_NAME, rows)
    with open(tmp_path / corpus.MANIFEST_NAME, "a") as f:
        f.write('{"path": "half')  # a build still writing
    assert corpus.read_manifest(tmp_path) == rows
    train_speech = list(corpus.iter_split(tmp_path, "train", kinds=["speech"]))
    assert len(train_speech) == 1 and train_speech[0]["abs_path"].endswith("speech/x/train/a.wav")
    assert corpus.CorpusManifest(tmp_path).hours()["music"]["valid"] == pytest.approx(1.5 / 3600, abs=1e-3)
    with pytest.raises(ValueError, match="unknown split"):
        list(corpus.iter_split(tmp_path, "dev"))
    with pytest.raises(FileNotFoundError, match="audiotok data build"):
        corpus.read_manifest(tmp_path / "missing")


def test_wad_sound_lump(tmp_path):
    pcm = (128 + 100 * np.sin(np.arange(11025) / 5)).astype(np.uint8)
    lump = struct.pack("<HHI", 3, 11025, pcm.size + 32) + bytes(16) + pcm.tobytes() + bytes(16)
    header_size = 12
    wad = struct.pack("<4sii", b"PWAD", 1, header_size + len(lump)) + lump
    wad += struct.pack("<ii8s", header_size, len(lump), b"DSTEST")
    (tmp_path / "t.wad").write_bytes(wad)
    wav, rate = decode.read_wad_sound(str(tmp_path / "t.wad"), "DSTEST")
    assert rate == 11025 and wav.size == pcm.size
    np.testing.assert_allclose(wav, (pcm.astype(np.float32) - 128) / 128)


def test_parse_hours_and_cli_registration():
    import argparse

    from codec.data import cli as data_cli

    assert data_cli._parse_hours("2") == dict.fromkeys(corpus.KINDS, 2.0)
    assert data_cli._parse_hours("speech=6,sfx=1") == {"speech": 6.0, "sfx": 1.0}
    with pytest.raises(argparse.ArgumentTypeError):
        data_cli._parse_hours("noise=1")
    parser = argparse.ArgumentParser()
    data_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "build", "--out", "x", "--kinds", "speech", "--skip-install"])
    assert args.func is data_cli._run_build and args.skip_install and args.kinds == "speech"


def test_manifest_lines_are_json(tmp_path):
    corpus.append_rows(tmp_path / corpus.MANIFEST_NAME, [{"a": 1}])
    assert json.loads((tmp_path / corpus.MANIFEST_NAME).read_text()) == {"a": 1}


def test_clipped_fraction_flags_clipped_audio():
    clean = _tone(1.0)
    assert corpus.clipped_fraction(clean) < 0.05  # a pure sine dwells near its peak more than speech
    clipped = np.clip(4 * clean, -0.8, 0.8)
    assert corpus.clipped_fraction(clipped) > 0.5


def test_per_file_license_from_dep5_copyright():
    text = (
        "Files: *\nCopyright: x\nLicense: GPL-2+\n\nFiles: *.ogg\nCopyright: y\nLicense: CC-BY-SA-3.0\n\n"
        "Files: mtg/mods/tnt/sounds/*\n data/sfx/boom.ogg\nCopyright: none\nLicense: CC0-1.0\n\n"
        "Files: debian/*\nCopyright: z\nLicense: MIT\n"
    )
    paras = sources.parse_dep5_files(text)
    assert paras[2] == (["mtg/mods/tnt/sounds/*", "data/sfx/boom.ogg"], "CC0-1.0")
    match = sources.match_file_license
    assert match(paras, "/usr/share/games/minetest/games/minetest_game/mods/tnt/sounds/a.ogg") == "CC0-1.0"
    assert match(paras, "/usr/share/games/stk/data/sfx/boom.ogg") == "CC0-1.0"
    assert match(paras, "/usr/share/games/stk/data/sfx/other.ogg") == "CC-BY-SA-3.0"
    assert match(paras, "/usr/share/x/readme.txt") is None  # only ``*`` applies: the package-wide license


def test_fillets_trains_on_czech_and_english_lines_and_keeps_dutch_out(tmp_path):
    from codec.data.sources import fillets_jobs

    for level, language, names in [("lvl", "cs", ["a1", "a2"]), ("lvl", "nl", ["a1"]), ("lvl", "en", ["a1"])]:
        (tmp_path / "sound" / level / language).mkdir(parents=True)
        for name in names:
            corpus.write_wav(tmp_path / "sound" / level / language / f"{name}.ogg", _tone(1.0))
    (tmp_path / "script" / "lvl").mkdir(parents=True)
    (tmp_path / "script" / "lvl" / "dialogs_en.lua").write_text(
        'dialogId("a1", "font_small", "Watch and \\"learn\\".")\n', encoding="utf-8"
    )
    jobs = fillets_jobs(tmp_path)
    assert sorted((j["language"], j["input"].split("/sound/")[1]) for j in jobs) == [
        ("cs", "lvl/cs/a1.ogg"), ("cs", "lvl/cs/a2.ogg"), ("en", "lvl/en/a1.ogg")
    ]  # fmt: skip
    assert {(j["kind"], j["license"], j["split"]) for j in jobs} == {("speech", "GPL-2", "train")}
    english = next(j for j in jobs if j["language"] == "en")
    assert english["text"] == 'Watch and \\"learn\\".' and english["package"] == "fillets-ng-data"
    # The builder honours a job's own split: every clip of the source goes to train.
    job = {
        **english,
        "input": str(tmp_path / "sound" / "lvl" / "en" / "a1.ogg"),
        "out": str(tmp_path / "out"),
    }
    rows = corpus.process_job(job)
    assert rows and {r["split"] for r in rows} == {"train"}


def test_zip_members_are_jobs_and_decode_from_the_archive(tmp_path):
    import zipfile

    from codec.data.sources import _zip_jobs

    archive = tmp_path / "public.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for member, seconds in [("audio/music/b.wav", 25.0), ("audio/music/a.wav", 2.0), ("art/t.wav", 1.0)]:
            corpus.write_wav(tmp_path / "x.wav", _tone(seconds))
            z.write(tmp_path / "x.wav", member)
        z.writestr("audio/music/readme.txt", "not audio")

    jobs = _zip_jobs("z", "music", "p", str(archive), ("audio/music/",), max_seconds=12.0)
    assert [j["member"] for j in jobs] == ["audio/music/a.wav", "audio/music/b.wav"]
    assert jobs[1]["source_id"] == f"{archive}:audio/music/b.wav"
    rows = corpus.process_job({**jobs[1], "out": str(tmp_path / "out")})
    # 25 s of tone capped at the job's 12 s -> two 6 s clips, same split, the archive's bytes decoded.
    assert [r["seconds"] for r in rows] == pytest.approx([6.0, 6.0], abs=1e-3)
    assert {r["split"] for r in rows} == {corpus.split_for_source(jobs[1]["source_id"])}
    wav, _ = corpus.read_wav(tmp_path / "out" / rows[0]["path"])
    assert np.abs(wav).max() == pytest.approx(0.3, abs=0.01)
    assert _zip_jobs("z", "music", "p", str(tmp_path / "missing.zip"), ("audio/",)) == []


def test_recorded_stages_come_before_synthetic_ones():
    # Each stage's budget is what the kind's cap leaves, so a fresh `make data` must reach every recorded
    # voice and soundtrack (0 A.D.'s included) before espeak, flite, festival and MIDI fill the rest of the cap.
    speech = [s.name for s in stages() if s.kind == "speech"]
    synthetic = {"espeak", "flite", "festival"}
    first_synthetic = min(i for i, name in enumerate(speech) if name in synthetic)
    assert set(speech[first_synthetic:]) == synthetic
    assert "0ad-voices" in speech[:first_synthetic]
    music = [s.name for s in stages() if s.kind == "music"]
    assert music[-1] == "music21"  # rendered MIDI last: the recorded soundtracks are not squeezed out


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie left for an init that does not reap counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _start_tool_in_worker(tmp_path, use_run_tool: bool):
    pidfile = tmp_path / f"tool-{use_run_tool}.pid"
    cmd = ["sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"]
    worker = mp.get_context("fork").Process(target=run_tool if use_run_tool else subprocess.run, args=(cmd,))
    worker.start()
    for _ in range(200):
        if pidfile.exists() and pidfile.read_text().strip():
            break
        time.sleep(0.02)
    pid = int(pidfile.read_text())
    worker.terminate()  # what Pool.terminate() does to a worker once the stage's budget is reached
    worker.join()
    return pid


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG) is Linux-only")
def test_a_decoder_tool_dies_with_its_worker(tmp_path):
    orphan = _start_tool_in_worker(tmp_path, use_run_tool=False)
    try:
        time.sleep(0.3)
        assert _alive(orphan)  # plain subprocess.run: the tool outlives its terminated worker
    finally:
        os.kill(orphan, signal.SIGKILL)
    pid = _start_tool_in_worker(tmp_path, use_run_tool=True)
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)
