"""``audiotok eval lm``: a causal LM's teacher-forced bits agree with what `lm compress` writes, a trained LM
scores its learned stream far below the raw codes and a random stream near them, a masked LM is scored on
hidden spans repeatably, and a store the LM cannot score is refused with one clear line."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from stores import make_store

import audiotok.cli as audiotok_cli
from eval.lm_eval import LMEvalError, evaluate_lm
from tokenlm.compress import compress_store
from tokenlm.model import TokenLM
from tokenlm.train import load_config, train

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "tokenlm" / "tiny.yaml"


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    root = tmp_path_factory.mktemp("lm-eval")
    learnable = make_store(root / "learnable", items=16, frames=40)
    model_cfg, cfg = load_config(TINY)
    cfg = replace(cfg, steps=60, eval_every=60, log_every=60, ckpt_every=60)
    lm = train(model_cfg, cfg, [str(learnable)], root / "run", quiet=True)
    return {
        "root": root,
        "lm": lm,
        "learnable": learnable,
        "random": make_store(root / "random", random=True),
    }


def test_teacher_forced_bits_match_the_compressed_file_and_follow_what_was_learned(setup):
    lm = TokenLM.from_pretrained(setup["lm"])
    report = evaluate_lm(lm, [setup["learnable"], setup["random"]], limit=8)
    learned, noise = report["stores"]["learnable"], report["stores"]["random"]
    assert learned["items"] == noise["items"] == 8 and learned["seconds"] == pytest.approx(8 * 40 / 50)
    assert learned["raw_bits_per_second"] == pytest.approx(3 * 4 * 50)  # 3 codebooks of 16 at 50 frames/s
    assert learned["saving"] > 0.5 and learned["bits_per_second"] < 0.5 * noise["bits_per_second"]
    assert len(learned["bits_per_code"]) == 3
    stats = compress_store(lm, setup["learnable"], setup["root"] / "all.lmz").to_dict()
    full = evaluate_lm(lm, [setup["learnable"]], limit=100)["stores"]["learnable"]
    assert full["items"] == stats["items"] == 16
    # the range coder writes what the model predicts, plus at most a few 32-bit words per item
    assert (
        0 <= stats["coded_bits_per_second"] - full["bits_per_second"] <= 0.02 * full["bits_per_second"] + 80
    )


def test_a_masked_lm_is_scored_on_hidden_spans_repeatably(tmp_path):
    model_cfg, _ = load_config(TINY)
    lm = TokenLM.build(replace(model_cfg, pattern="parallel", objective="masked"))
    lm.meta["codec_id"] = "tiny-16k@000000000000"
    store = make_store(tmp_path / "store", items=6, frames=120)
    a = evaluate_lm(lm, [store], limit=6, seed=0)["stores"]["store"]
    again = evaluate_lm(lm, [store], limit=6, seed=0)["stores"]["store"]
    other = evaluate_lm(lm, [store], limit=6, seed=1)["stores"]["store"]
    assert a == again and a["masked_codes"] != other["masked_codes"]
    assert a["masked_codes"] % 3 == 0 and 0 <= a["masked_accuracy"] <= 1  # a hidden frame hides all 3 codes
    assert "bits_per_second" not in a


def test_stores_the_lm_cannot_score_are_refused(setup, tmp_path, capsys):
    lm = TokenLM.from_pretrained(setup["lm"])
    other = make_store(tmp_path / "other", items=2, codec_id="another-16k@111111111111")
    with pytest.raises(LMEvalError, match="another-16k"):
        evaluate_lm(lm, [other])
    with pytest.raises(LMEvalError, match="2 codebooks; the LM needs 3"):
        evaluate_lm(lm, [make_store(tmp_path / "two", items=2, num_codebooks=2)])
    with pytest.raises(LMEvalError, match="no items"):
        evaluate_lm(lm, [make_store(tmp_path / "empty", items=0)])
    (tmp_path / "plain").mkdir()
    out = tmp_path / "lm.json"
    capsys.readouterr()
    argv = ["eval", "lm", str(tmp_path / "plain"), "--lm", str(setup["lm"]), "--out", str(out), "--quiet"]
    assert audiotok_cli.main(argv) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "not a token store" in errors[0] and not out.exists()
    argv = ["eval", "lm", str(setup["learnable"]), "--lm", str(setup["lm"]), "--out", str(out), "--quiet"]
    assert audiotok_cli.main(argv) == 0
    assert json.loads(out.read_text())["stores"]["learnable"]["items"] == 16
