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
