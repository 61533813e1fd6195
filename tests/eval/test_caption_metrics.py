"""eval.caption_metrics: identical captions score high, unrelated ones low, and a paraphrase sits between
an exact copy and an unrelated sentence on every metric. Skipped, with the reason, where java, the jars or
the packages are missing (install them with scripts/install_caption_metrics.sh); the SPICE/SPIDEr checks
are skipped alone where only SPICE's CoreNLP 3.6.0 jars are missing."""

import math

import pytest

from eval.caption_metrics import KEYS, CaptionMetricsUnavailable, caption_scores, metrics_available

REFS = [
    ["a dog barks loudly while cars pass by"],
    ["rain falls steadily on a metal roof"],
    ["a man speaks and then a door closes"],
    ["birds chirp in the trees at dawn"],
]
CANDIDATES = [refs[0] for refs in REFS]
PARAPHRASES = [
    "a dog barks loudly while cars drive by",
    "rain falls steadily onto a metal roof",
    "a man talks and then a door closes",
    "birds chirp in the trees in the morning",
]
UNRELATED = [
    "an orchestra plays a slow waltz",
    "someone types quickly on a keyboard",
    "a jet engine roars on the runway",
    "water boils in a kettle on a stove",
]

FULL, FULL_WHY = metrics_available()
BASE, BASE_WHY = metrics_available(spice=False)
pytestmark = pytest.mark.skipif(not BASE, reason=BASE_WHY)
WITH_SPICE = pytest.mark.skipif(not FULL, reason=FULL_WHY)


@pytest.fixture(scope="module")
def scores():  # ~40 s on 2 cores: three calls, each starting the PTB tokenizer and METEOR JVMs
    """One call per text set: the JVMs (tokenizer, METEOR, SPICE) start once per call."""
    return {
        name: caption_scores(preds, REFS, spice=FULL)
        for name, preds in (("same", CANDIDATES), ("para", PARAPHRASES), ("unrelated", UNRELATED))
    }


def test_keys_and_identical_captions_score_high(scores):
    same = scores["same"]
    assert set(same) == set(KEYS)
    assert same["bleu_4"] > 0.9 and same["meteor"] > 0.9 and same["rouge_l"] > 0.99
    assert same["cider_d"] > 1 and same["sbert_sim"] > 0.99


def test_unrelated_captions_score_low(scores):
    bad = scores["unrelated"]
    assert bad["bleu_4"] < 0.05 and bad["meteor"] < 0.2 and bad["rouge_l"] < 0.3
    assert bad["cider_d"] < 0.5 and bad["sbert_sim"] < 0.4


def test_paraphrase_ranks_between_copy_and_unrelated(scores):
    keys = [k for k in KEYS if not math.isnan(scores["para"][k])]
    for k in keys:
        assert scores["unrelated"][k] < scores["para"][k] <= scores["same"][k] + 1e-9, k


@WITH_SPICE
def test_spice_and_spider(scores):
    assert scores["same"]["spice"] > 0.9 and scores["same"]["spider"] > 0.5
    assert scores["unrelated"]["spice"] < 0.1
    assert scores["same"]["spider"] == pytest.approx(
        (scores["same"]["cider_d"] + scores["same"]["spice"]) / 2
    )


def test_missing_pieces_name_the_install_script(monkeypatch, tmp_path):
    monkeypatch.setenv("AAC_METRICS_CACHE_PATH", str(tmp_path))
    ok, why = metrics_available()
    assert not ok and "scripts/install_caption_metrics.sh" in why
    with pytest.raises(CaptionMetricsUnavailable, match="install_caption_metrics.sh"):
        caption_scores(["a dog barks"], [["a dog barks"]])
