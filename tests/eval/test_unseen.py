"""The unseen-speech set builder (eval/unseen.py) on a tiny fake ktuberling sounds folder."""

import json
import zipfile

import numpy as np
import pytest
import soundfile as sf

from eval.codec_items import collect_items
from eval.unseen import build_unseen


def fake_sounds(root, words: dict[str, int], sample_rate: int = 22050):
    """``words`` language -> how many 1-second 'words' (tones at distinct pitches) it has."""
    for language, count in words.items():
        (root / language).mkdir(parents=True)
        for i in range(count):
            t = np.arange(sample_rate) / sample_rate
            tone = 0.3 * np.sin(2 * np.pi * (200 + 37 * i + 5 * len(language)) * t)
            sf.write(root / language / f"w{i:02d}.ogg", tone.astype(np.float32), sample_rate)
    return root


def test_unseen_items_join_one_languages_words_into_long_enough_clips(tmp_path):
    sounds = fake_sounds(tmp_path / "sounds", {"de": 7, "en": 3, "fr": 2})
    # A variant folder shipping the same recordings as "de" adds nothing.
    (tmp_path / "sounds" / "de@variant").mkdir()
    for f in (tmp_path / "sounds" / "de").iterdir():
        (tmp_path / "sounds" / "de@variant" / f.name).write_bytes(f.read_bytes())

    rows = build_unseen(tmp_path / "out", sounds, seconds=2.5, per_group=2)
    # de: 7 words -> two items of 3 words (the 7th is left over); en: one; fr: 2 words are too short.
    assert [r["path"] for r in rows] == ["de-0.wav", "de-1.wav", "en-0.wav"]
    assert rows[1]["original"] == ["de/w03.ogg", "de/w04.ogg", "de/w05.ogg"]
    for r in rows:
        audio, sr = sf.read(tmp_path / "out" / r["path"])
        assert sr == 16000 and audio.ndim == 1
        assert r["seconds"] == pytest.approx(len(audio) / sr) and r["seconds"] >= 2.5
        assert (r["kind"], r["split"], r["license"]) == ("speech", "test", "GPL-2+")
    # 3 words of 1 s and two 0.25 s pauses between them.
    assert rows[0]["seconds"] == pytest.approx(3.5, abs=1e-3)

    manifest = [json.loads(x) for x in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    assert manifest == rows
    assert [p.name for p, kind in collect_items(tmp_path / "out")] == ["de-0.wav", "de-1.wav", "en-0.wav"]

    again = build_unseen(tmp_path / "again", sounds, seconds=2.5, per_group=2)
    assert again == rows
    assert (tmp_path / "again" / "de-1.wav").read_bytes() == (tmp_path / "out" / "de-1.wav").read_bytes()


def test_unseen_without_the_package_says_how_to_install_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install ktuberling-data"):
        build_unseen(tmp_path / "out", tmp_path / "missing")
    assert not (tmp_path / "out").exists()


def test_fillets_items_join_a_levels_dutch_lines_in_dialogue_order(tmp_path):
    sound = tmp_path / "sound"
    for level, count in {"aztec": 12, "barrel": 1}.items():
        fake_sounds(sound / level, {"nl": count})
        fake_sounds(sound / level, {"cs": 3})  # the training languages are not part of the set
    (sound / "aztec" / "nl" / "w10.ogg").rename(sound / "aztec" / "nl" / "help10.ogg")
    (sound / "aztec" / "nl" / "w02.ogg").rename(sound / "aztec" / "nl" / "help2.ogg")
    (sound / "aztec" / "nl" / "w03.ogg").write_bytes(b"")  # a broken line is left out, not fatal

    rows = build_unseen(tmp_path / "out", sound, seconds=2.5, which="fillets-nl")
    # aztec: 11 usable lines -> at most 2 items of 3 lines; barrel: 1 line is too short.
    assert [r["path"] for r in rows] == ["aztec-0.wav", "aztec-1.wav"]
    assert rows[0]["original"] == ["aztec/nl/help2.ogg", "aztec/nl/help10.ogg", "aztec/nl/w00.ogg"]
    assert rows[1]["original"] == ["aztec/nl/w01.ogg", "aztec/nl/w04.ogg", "aztec/nl/w05.ogg"]
    assert {(r["source"], r["license"], r["language"]) for r in rows} == {
        ("fillets-ng-data-nl", "GPL-2", "nl")
    }
    with pytest.raises(FileNotFoundError, match="apt-get install fillets-ng-data-nl"):
        build_unseen(tmp_path / "none", tmp_path / "missing", which="fillets-nl")


def test_warzone_items_come_from_the_voice_folders_of_the_games_zip(tmp_path):
    folders = fake_sounds(tmp_path / "loose", {"tutorial": 4, "research": 3, "weapons": 5}, 11025)
    for i in (0, 1):  # tut2 comes before tut10
        (folders / "tutorial" / f"w{i:02d}.ogg").rename(folders / "tutorial" / f"tut{10 - 8 * i}.ogg")
    archive = tmp_path / "base.wz"
    with zipfile.ZipFile(archive, "w") as z:
        for member, folder in [
            ("audio/tutorial", "tutorial"),
            ("audio/memressp/research", "research"),
            ("audio/sfx/weapons", "weapons"),  # sound effects: not a voice folder
        ]:
            for f in sorted((folders / folder).iterdir()):
                z.write(f, f"{member}/{f.name}")

    rows = build_unseen(tmp_path / "out", archive, seconds=2.5, which="warzone")
    assert [r["path"] for r in rows] == ["memressp-research-0.wav", "tutorial-0.wav"]
    assert rows[1]["original"] == [
        "audio/tutorial/tut2.ogg",
        "audio/tutorial/tut10.ogg",
        "audio/tutorial/w02.ogg",
    ]
    assert {(r["source"], r["license"], r["language"]) for r in rows} == {
        ("warzone2100-data", "GPL-2+", "en")
    }
    assert not (tmp_path / "out" / ".source" / "audio" / "sfx").exists()
    audio, sr = sf.read(tmp_path / "out" / "tutorial-0.wav")
    assert sr == 16000 and len(audio) == pytest.approx(3.5 * sr, abs=2)

    with pytest.raises(FileNotFoundError, match="apt-get install warzone2100-data"):
        build_unseen(tmp_path / "none", tmp_path / "missing.wz", which="warzone")


def test_a_band_limited_version_keeps_the_items_and_drops_the_highs(tmp_path):
    sounds = tmp_path / "sounds"
    (sounds / "de").mkdir(parents=True)
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, 3 * 16000).astype(np.float32)
    sf.write(sounds / "de" / "w00.wav", noise, 16000)

    full = build_unseen(tmp_path / "full", sounds, seconds=2.0)
    narrow = build_unseen(tmp_path / "narrow", sounds, seconds=2.0, bandlimit=8000)
    assert [r["path"] for r in narrow] == [r["path"] for r in full] and narrow[0]["bandlimit"] == 8000
    for rows, root, lo, hi in [(full, "full", 0.4, 0.6), (narrow, "narrow", 0.0, 0.01)]:
        audio, _ = sf.read(tmp_path / root / rows[0]["path"])
        power = np.abs(np.fft.rfft(audio)) ** 2
        assert lo < power[int(len(power) * 4200 / 8000) :].sum() / power.sum() < hi
    with pytest.raises(ValueError, match="bandlimit must be a rate below 16000"):
        build_unseen(tmp_path / "bad", sounds, seconds=2.0, bandlimit=16000)


def test_a_version_over_background_music_mixes_it_at_the_asked_ratio(tmp_path):
    sounds = fake_sounds(tmp_path / "sounds", {"de": 6})
    music = tmp_path / "bgm"
    music.mkdir()
    rng = np.random.default_rng(1)
    for name in ("a.ogg", "b.ogg"):
        sf.write(music / name, rng.uniform(-0.2, 0.2, 3 * 16000).astype(np.float32), 16000)

    clean = build_unseen(tmp_path / "clean", sounds, seconds=2.5)
    noisy = build_unseen(
        tmp_path / "noisy",
        sounds,
        seconds=2.5,
        background="neverball-music",
        snr_db=5.0,
        background_source=music,
    )
    assert [r["path"] for r in noisy] == [r["path"] for r in clean] == ["de-0.wav", "de-1.wav"]
    offsets = []
    for r in noisy:
        assert r["background"]["snr_db"] == 5.0 and r["background"]["source"] == "neverball-data"
        offsets.append(r["background"]["offset_seconds"])
        speech, _ = sf.read(tmp_path / "clean" / r["path"])
        mixture, _ = sf.read(tmp_path / "noisy" / r["path"])
        under = mixture - speech
        snr = 10 * np.log10(np.mean(speech**2) / np.mean(under**2))
        assert snr == pytest.approx(5.0, abs=0.1)
    assert offsets[0] != offsets[1]  # neighbours hear different stretches
    again = build_unseen(
        tmp_path / "again",
        sounds,
        seconds=2.5,
        background="neverball-music",
        snr_db=5.0,
        background_source=music,
    )
    assert again == noisy
    assert (tmp_path / "again" / "de-1.wav").read_bytes() == (tmp_path / "noisy" / "de-1.wav").read_bytes()

    with pytest.raises(FileNotFoundError, match="apt-get install neverball-data"):
        build_unseen(
            tmp_path / "x", sounds, background="neverball-music", background_source=tmp_path / "none"
        )
    with pytest.raises(ValueError, match="unknown background"):
        build_unseen(tmp_path / "y", sounds, background="rain")
