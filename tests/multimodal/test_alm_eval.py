"""`audiotok eval alm` on the tiny paired set: the report's numbers are what its parts compute."""

from __future__ import annotations

import json

from eval.alm_eval import accuracy, majority
from multimodal.data import QAItem


def test_accuracy_and_majority_count_exact_matches():
    items = [QAItem(0, "q", "Yes", "exist", "t", False), QAItem(1, "q", "no", "exist", "t", False),
             QAItem(2, "q", "three", "count", "t", False)]  # fmt: skip
    acc = accuracy(items, ["yes.", "yes", "Three"])
    assert acc == {"overall": 2 / 3, "n": 3, "count": 1.0, "exist": 0.5}
    train = [{"qa": [{"answer": "yes", "type": "exist"}, {"answer": "yes", "type": "exist"},
                     {"answer": "three", "type": "count"}]}]  # fmt: skip
    overall, by_type = majority(train, items)
    assert overall["overall"] == 1 / 3 and by_type["overall"] == 2 / 3


def test_eval_alm_command_writes_the_report(tiny_alm, paired_set, tmp_path, capsys):
    from audiotok.cli import main

    out = tmp_path / "alm_eval.json"
    code = main(["eval", "alm", "--model", str(tiny_alm), "--data", str(paired_set), "--question-only",
                 str(tiny_alm), "--captions", "4", "--out", str(out)])  # fmt: skip
    assert code == 0
    report = json.loads(out.read_text())
    ship, qo = report["models"]["shipped"], report["models"]["question-only"]
    for split in ("test", "unseen"):  # every question in training wordings is scored
        rows = [json.loads(line) for line in (paired_set / f"{split}.jsonl").read_text().splitlines()]
        assert ship[split]["n"] == sum(not q["heldout"] for r in rows for q in r["qa"])
    assert ship["test"] == qo["test"]  # the same export twice gives the same answers
    assert ship["retrieval"]["candidates"] == 6
    assert 0 <= ship["retrieval"]["a2t_r1"] <= ship["retrieval"]["a2t_r5"] <= 1
    assert ship["speed"]["clips"] == 6 and ship["speed"]["captions_per_s"] > 0
    assert len(ship["caption_examples"]) == 4
    assert "| overall |" in capsys.readouterr().out
    assert main(["eval", "alm", "--model", str(tiny_alm), "--data", str(tmp_path / "nowhere")]) == 2


def test_wording_breakdowns_ask_the_same_clips_in_other_wordings(monkeypatch):
    from eval import alm_eval
    from multimodal.scenes import QUESTIONS

    asked = []

    def fake_answers(alm, data, items):  # "yes" only to the training wording: the breakdown must show it
        asked.append([(q.row, q.question) for q in items])
        return ["yes" if q.question == QUESTIONS["exist_music"]["seen"][0] else "no" for q in items]

    monkeypatch.setattr(alm_eval, "answers", fake_answers)
    qa = [QAItem(i, "do you notice a tune?", "yes", "exist_music", "exist_music.u0", False) for i in range(3)]
    got = alm_eval.reworded(None, None, qa, ["no"] * 3)  # the unseen wording's answers, already given
    assert got == {"exist_music": {"n": 3, "unseen": 0.0, "training": 1.0, "heldout": 0.0}}
    assert [r for r, _ in asked[0]] == [0, 1, 2] and asked[1][0][1] == QUESTIONS["exist_music"]["heldout"]

    items = [QAItem(0, "is there music?", "yes", "exist_music", "exist_music.0", False),
             QAItem(1, "is there music?", "no", "exist_music", "exist_music.3", False),
             QAItem(2, "x", "no", "exist_music", "exist_music.7", False)]  # fmt: skip
    split = alm_eval.by_wording(items, ["yes", "yes", "no"])  # answered without the model
    assert split == {"first": {"accuracy": 0.5, "n": 2}, "later": {"accuracy": 1.0, "n": 1}}
