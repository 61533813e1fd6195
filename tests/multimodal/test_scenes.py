"""Scenes, captions and questions from a synthetic bank (tones and noise): no espeak, fluidsynth or packages."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from multimodal import scenes
from multimodal.scenes import (
    CAPTIONS,
    NUMBERS,
    ORDINALS,
    QUESTIONS,
    SPLITS,
    _name,
    captions_for,
    compose_scene,
    make_row,
    questions_for,
    split_banks,
)
from multimodal.sounds import SAMPLE_RATE, Sound, melody_plan, midi_bytes, stable_split, trim_silence


def tone(seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def noise(seconds: float, seed: int) -> np.ndarray:
    return (0.2 * np.random.default_rng(seed).standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)


@pytest.fixture(scope="module")
def bank() -> list[Sound]:
    out = []
    for i, word in enumerate(["dog", "apple", "river", "seven"]):
        for gender in ("male", "female"):
            sid = f"espeak:en+{gender[0]}1:s150:p50:{word}"
            out.append(Sound("speech", sid, "GPL-3+", {"word": word, "language": "en", "gender": gender},
                             tone(0.4 + 0.1 * i, 200 + 20 * i)))  # fmt: skip
    for i, inst in enumerate(["piano", "violin", "flute"]):
        for direction in ("rising", "falling"):
            attrs = {"instrument": inst, "direction": direction, "register": "high", "tempo": "fast"}
            out.append(
                Sound("music", f"fluidsynth:{inst}:{direction}", "MIT", attrs, tone(1.5 + 0.3 * i, 600))
            )
    for i, label in enumerate(["bell", "door", "cow", "splash"]):
        for k in range(3):
            out.append(
                Sound("sfx", f"/x/{label}{k}.ogg", "GPL-2", {"label": label}, noise(0.3 + 0.4 * k, i * 3 + k))
            )
    for s in out:
        s.split = stable_split(s.source_id)
    return out


def by_kind(bank: list[Sound]) -> dict[str, list[Sound]]:
    out: dict[str, list[Sound]] = {}
    for s in bank:
        out.setdefault(s.kind, []).append(s)
    return out


def test_scene_events_fit_and_questions_match(bank):
    kinds = by_kind(bank)
    labels = ["bell", "cow", "door", "splash"]
    for seed in range(60):
        rng = np.random.default_rng(seed)
        audio, events, background = compose_scene(kinds, rng)
        seconds = len(audio) / SAMPLE_RATE
        assert 2.0 <= seconds <= 8.6 and 1 <= len(events) <= 5
        assert audio.dtype == np.float32 and np.abs(audio).max() <= 0.95 + 1e-6
        starts = [e["start"] for e in events]
        assert starts == sorted(starts)
        for a, b in zip(events, events[1:]):
            assert b["start"] > a["start"] and b["start"] >= a["end"] - 0.151  # at most a slight overlap
        for e in events:
            assert 0 <= e["start"] < e["end"] <= seconds + 1e-3 and -20 <= e["gain_db"] <= 0
        caps = captions_for(events, background, rng, "seen")
        assert 3 <= len(caps) <= 5 and len({c["template"].split(".")[0] for c in caps}) >= 2
        qa = questions_for(events, background, rng, "seen", labels)
        assert 4 <= len(qa) <= 10  # 6-10 where the scene has that many balanced questions
        for q in qa:
            assert q["answer"] == q["answer"].lower() and len(q["answer"].split()) <= 2
            check_answer(q, events)


def check_answer(q: dict, events: list[dict]) -> None:
    t, a = q["type"], q["answer"]
    if t == "count":
        assert a == NUMBERS[len(events)]
    elif t == "exist_speech":
        assert a == ("yes" if any(e["kind"] == "speech" for e in events) else "no")
    elif t == "exist_music":
        assert a == ("yes" if any(e["kind"] == "music" for e in events) else "no")
    elif t == "order":
        first = min((e for e in events if _name(e) in q["question"]), key=lambda e: e["start"])
        assert a == _name(first)
    elif t in ("louder", "longer"):
        i, j = (ORDINALS.index(w) for w in ORDINALS if f"the {w}" in q["question"])
        key = (lambda e: e["gain_db"]) if t == "louder" else (lambda e: e["end"] - e["start"])
        assert a == (ORDINALS[i] if key(events[i]) > key(events[j]) else ORDINALS[j])
    elif t == "word":
        assert a in {e.get("word") for e in events}
    elif t == "instrument":
        assert a in {e.get("instrument") for e in events}


def test_exist_answers_are_balanced(bank):
    kinds = by_kind(bank)
    answers = {}
    for seed in range(300):
        rng = np.random.default_rng(seed)
        _, events, background = compose_scene(kinds, rng)
        for q in questions_for(events, background, rng, "seen", ["bell", "cow", "door", "splash"]):
            if q["type"].startswith("exist") or q["type"] == "noise":
                answers.setdefault(q["type"], []).append(q["answer"] == "yes")
    for t, yes in answers.items():
        assert 0.3 < np.mean(yes) < 0.7, (t, np.mean(yes))


def test_heldout_wordings_only_in_test(bank, monkeypatch):
    monkeypatch.setitem(scenes._STATE, "licenses", {s.source_id: s.license for s in bank})
    heldout = {v["heldout"].split("{")[0] for v in QUESTIONS.values()}
    unseen_ids = {f"{t}.u{k}" for t, v in QUESTIONS.items() for k in range(len(v["unseen"]))}
    seen_flags = {"train": 0, "test": 0}
    for split in ("train", "valid", "test", "unseen"):
        full, real = split_banks(bank, "train")  # the split of the bank does not matter here
        for i in range(40):
            row, _ = make_row(split, i, 0, full, real, ["bell", "cow", "door", "splash"])
            for q in row["qa"]:
                is_unseen = q["template"] in unseen_ids
                assert is_unseen == (split == "unseen")
                if split in ("train", "valid", "unseen"):
                    assert not q["heldout"] and not q["template"].endswith(".h")
                seen_flags["test" if split == "test" else "train"] += q["heldout"]
            for c in row["captions"]:
                assert c["heldout"] == c["template"].endswith(".h")
                assert split == "test" or not c["heldout"]
    assert seen_flags["train"] == 0 and seen_flags["test"] > 0
    assert all(h for h in heldout)


def _word_grams(text: str, n: int) -> set[tuple[str, ...]]:
    words = re.findall(r"[\w{}']+", text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


@pytest.mark.parametrize("table", [QUESTIONS, CAPTIONS], ids=["questions", "captions"])
def test_unseen_wordings_stay_unseen(table):
    """The unseen split tests wordings the model never trained on: none of them (nor a held-out one) is a
    training wording, and no unseen wording shares a run of five words with a training wording of its type."""

    def text(w):  # a chain caption family is (prefix, connective, suffix)
        return " ... ".join(w) if isinstance(w, tuple) else w

    for kind, entry in table.items():
        seen = [text(w) for w in entry["seen"]]
        assert len(set(seen)) == len(seen), kind
        for other in [entry["heldout"], *entry["unseen"]]:
            assert text(other) not in seen, (kind, other)
        grams = set().union(*(_word_grams(w, 5) for w in seen))
        for unseen in entry["unseen"]:
            assert not _word_grams(text(unseen), 5) & grams, (kind, unseen)


def test_rows_deterministic(bank, monkeypatch):
    monkeypatch.setitem(scenes._STATE, "licenses", {s.source_id: s.license for s in bank})
    full, real = split_banks(bank, "train")
    a = [make_row("train", i, 3, full, real, ["bell"]) for i in range(5)]
    b = [make_row("train", i, 3, full, real, ["bell"]) for i in range(5)]
    for (ra, wa), (rb, wb) in zip(a, b):
        assert json.dumps(ra) == json.dumps(rb) and np.array_equal(wa, wb)
    c = make_row("train", 0, 4, full, real, ["bell"])[0]
    assert json.dumps(c) != json.dumps(a[0][0])


def test_split_sources_disjoint(bank, monkeypatch):
    monkeypatch.setitem(scenes._STATE, "licenses", {s.source_id: s.license for s in bank})
    used = {}
    for split in SPLITS[:3]:
        full, real = split_banks(bank, split)
        if not full:
            continue
        used[split] = {src for i in range(20) for src in make_row(split, i, 0, full, real, [])[0]["sources"]}
    splits = list(used)
    for i, a in enumerate(splits):
        for b in splits[i + 1 :]:
            assert not used[a] & used[b]


def test_melodies_are_monotonic_and_midi_parses():
    for mel in melody_plan(16, np.random.default_rng(0)):
        p = mel["pitches"]
        steps = np.diff(p)
        assert (steps > 0).all() if mel["direction"] == "rising" else (steps < 0).all()
        assert (np.mean(p) > 64) == (mel["register"] == "high")
    data = midi_bytes(0, melody_plan(3, np.random.default_rng(1)))
    assert data[:4] == b"MThd" and data[14:18] == b"MTrk" and data.endswith(b"\xff\x2f\x00")


def test_trim_silence():
    wav = np.concatenate([np.zeros(8000), tone(0.5), np.zeros(8000)]).astype(np.float32)
    trimmed = trim_silence(wav)
    assert abs(len(trimmed) / SAMPLE_RATE - 0.5) < 0.06


def test_corpus_music_excerpts_keep_their_songs_split_and_name_the_piece(tmp_path):
    import soundfile as sf

    from multimodal.scenes import describe
    from multimodal.sounds import corpus_music_bank, corpus_splits

    t = np.arange(10 * SAMPLE_RATE) / SAMPLE_RATE
    rows = []
    for i, (stage, split, loud) in enumerate(
        [
            ("0ad-music", "train", 1),
            ("stk-music", "test", 1),
            ("music21", "valid", 1),
            ("0ad-music", "train", 0),
        ]
    ):
        path = f"music/{stage}/{split}/{i}.wav"
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        sf.write(tmp_path / path, (0.3 * loud * np.sin(2 * np.pi * 330 * t)).astype(np.float32), SAMPLE_RATE)
        rows.append({"path": path, "kind": "music", "stage": stage, "split": split, "source_id": f"song{i}",
                     "license": "CC-BY-SA-3.0"})  # fmt: skip
    rows.append(
        {"path": "speech/x.wav", "kind": "speech", "stage": "espeak", "split": "train", "source_id": "s"}
    )
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    bank = corpus_music_bank(manifest)
    assert [s.source_id for s in bank] == ["song0", "song1", "song2"]  # the silent segment is left out
    assert [s.attrs["piece"] for s in bank] == ["soundtrack", "soundtrack", "chorale"]
    assert all(len(s.audio) == 3 * SAMPLE_RATE and s.kind == "music" for s in bank)
    splits = corpus_splits(manifest)
    assert [splits[s.source_id] for s in bank] == ["train", "test", "valid"]
    rng = np.random.default_rng(0)
    phrase = describe({"kind": "music", "piece": "chorale"}, rng)
    assert "chorale" in phrase or "music" in phrase
    assert corpus_music_bank(tmp_path / "missing.jsonl") == []


def test_neverball_announcements_are_speech(tmp_path, monkeypatch):
    import soundfile as sf

    from multimodal import sounds

    t = np.arange(SAMPLE_RATE // 2) / SAMPLE_RATE
    (tmp_path / "snd").mkdir()
    for name in ("go", "player4", "bump", "tick"):
        sf.write(
            tmp_path / "snd" / f"{name}.ogg",
            (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32),
            SAMPLE_RATE,
        )
    monkeypatch.setattr(sounds, "NEVERBALL", tmp_path)
    monkeypatch.setattr(sounds, "package_license", lambda package: "GPL-2+")
    kinds = {Path(s.source_id).stem: (s.kind, s.attrs, s.split) for s in sounds.neverball_bank()}
    assert kinds == {
        "bump": ("sfx", {}, "unseen"),
        "go": ("speech", {"language": "en"}, "unseen"),
        "player4": ("speech", {"language": "en"}, "unseen"),
        "tick": ("sfx", {}, "unseen"),
    }
