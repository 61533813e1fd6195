"""ViSQOL v3 (eval/visqol.py) through visqol-python: scores order degradations, and the codec report
carries the column when asked."""

import importlib.util
import sys

import numpy as np
import pytest
import torch

from codec.audio import load_audio
from eval.metrics import compute_metrics

EXAMPLES = "examples"
needs_visqol = pytest.mark.skipif(
    importlib.util.find_spec("visqol") is None,
    reason="visqol-python is not installed (pip install '.[visqol]')",
)


def clip(name: str, seconds: float = 4.0) -> np.ndarray:
    return load_audio(f"{EXAMPLES}/{name}.wav", target_sr=16000).wav[0, : int(seconds * 16000)].numpy()


def with_noise(x: np.ndarray, snr_db: float) -> np.ndarray:
    noise = np.random.default_rng(0).standard_normal(len(x)).astype(np.float32)
    return x + noise * np.sqrt(np.mean(x**2) / np.mean(noise**2) * 10 ** (-snr_db / 10))


@pytest.fixture(scope="module")
def scorer():
    from eval.visqol import VisqolScorer

    return VisqolScorer()


@needs_visqol
@pytest.mark.parametrize("kind", ["speech", "music"])
def test_visqol_orders_noise_levels(scorer, kind):
    x = clip(kind)
    scores = [scorer.score(x, y, kind)[0] for y in (x, with_noise(x, 45), with_noise(x, 25))]
    assert scores[0] > 4.2  # identical: near the top of the scale (speech 4.42, audio 4.73)
    assert scores[0] > scores[1] > scores[2] > 1.0, scores
    m = compute_metrics(x, with_noise(x, 25), 16000, kind, visqol=scorer)
    assert m.visqol == pytest.approx(scores[2])
    assert compute_metrics(x, x, 16000, kind).visqol is None  # not asked for


@needs_visqol
def test_visqol_of_silence_is_nan_with_a_reason(scorer):
    value, reason = scorer.score(np.zeros(16000), np.zeros(16000), "speech")
    assert np.isnan(value) and "silent" in reason
    with pytest.raises(ValueError, match="16000 Hz"):
        scorer.score(np.zeros(8000), np.zeros(8000), "speech", sr=8000)


@needs_visqol
def test_codec_report_has_a_visqol_column_that_rises_with_bitrate(scorer, tmp_path):
    from codec.registry import load_codec
    from eval.codec_eval import evaluate_codec

    torch.set_num_threads(2)
    report = evaluate_codec(
        load_codec("default"),
        [(f"{EXAMPLES}/speech.wav", "speech")],
        [3, 12],
        crop_seconds=4.0,
        visqol=scorer,
    )
    by = {r.setting: r.metrics["visqol"] for r in report.summary}
    assert by["K=12"]["n"] == 1 and by["K=12"]["mean"] > by["K=3"]["mean"] > 1.5
    assert (
        "visqol ↑" in report.to_markdown()
        and "visqol-python" in report.meta["metric_implementations"]["visqol"]
    )


def test_cli_without_visqol_python_is_one_usage_error(monkeypatch, capsys):
    import audiotok.cli

    monkeypatch.setitem(sys.modules, "visqol", None)  # import visqol -> ImportError
    rc = audiotok.cli.main(["eval", "codec", EXAMPLES, "--baselines", "none", "--visqol", "--quiet"])
    assert rc == 2 and "'.[visqol]'" in capsys.readouterr().err
