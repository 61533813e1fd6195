"""eval.report and ``audiotok eval report``: the page has a section for each result it finds (codec, robustness,
probe and ALM JSON, history.jsonl, clips, codebook usage) and a note for each it does not, every file it
references exists, and headless Chromium (Debian's chromium + chromium-driver, driven by selenium, offline)
loads it without console errors, with every image decoded and every player's wav readable.

The browser test saves a screenshot in its tmp dir, and also at $AUDIOTOK_SCREENSHOT when that is set."""

import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from codec.registry import load_codec
from eval.codec_eval import evaluate_codec
from eval.report import build_report, markdown_blocks
from eval.robustness import robustness

SR = 16000
SECTIONS = ("codec", "robustness", "lm", "probe", "alm", "curves", "clips", "usage")
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver") or "/usr/bin/chromedriver"


def make_run_dir(root: Path, codec) -> tuple[Path, list[Path]]:
    """A run dir with one result of each kind and two synthetic 1 s clips (a chirp and a noisy tone)."""
    run = root / "run"
    run.mkdir(parents=True)
    t = np.arange(SR) / SR
    clips = [root / "chirp.wav", root / "tone.wav"]
    sf.write(clips[0], 0.5 * np.sin(2 * np.pi * (200 * t + 1500 * t**2)), SR)
    sf.write(
        clips[1], 0.3 * np.sin(2 * np.pi * 440 * t) + 0.01 * np.random.default_rng(0).standard_normal(SR), SR
    )
    history = [{"step": s, "time_s": s / 10, "train/loss": 5 / s, "train/lr": 1e-3} for s in (10, 20, 30, 40)]
    history += [{"step": 40, "eval/loss": 0.3}]
    (run / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
    evaluate_codec(codec, [(clips[0], "music")], [3]).to_json(run / "report.json")
    report = robustness(
        codec, [(clips[1], None, "sfx")], perturbations=["identity", "gain-6dB"], bitrates=[3, 12]
    )
    (run / "robustness.json").write_text(json.dumps(report))
    probe = {
        "features": ["logmel", "codec-tokens"],
        "tasks": {
            t: {"classes": ["a", "b"], "n_train": 20, "n_test": 8, "chance": 0.5} for t in ("gender", "tempo")
        },
        "results": {
            t: {f: {"linear": 0.7, "mlp": 0.8} for f in ("logmel", "codec-tokens")}
            for t in ("gender", "tempo")
        },
        "dropped_tasks": {"letter": "fewer than two classes"},
        "skipped_features": {},
    }
    (run / "probe.json").write_text(json.dumps(probe))
    lm = {"format": "audiotok-eval-lm/1", "limit": 4, "stores": {"test-speech": {"items": 4, "seconds": 8.0,
          "bits_per_code": [9.1], "raw_bits_per_second": 6000.0, "bits_per_second": 5100.0, "saving": 0.15}},
          "lm": {"pattern": "delay", "objective": "causal", "num_codebooks": 12, "parameters": 9.5e6,
                 "codec_id": "audiotok-16k@e16f3d998f05"}}  # fmt: skip
    (run / "lm.json").write_text(json.dumps(lm))
    alm = {
        "model": "default",
        "models": {"shipped": {"test": {"accuracy": 0.5, "n": 40}, "caption_examples": ["x"]}},
    }
    (run / "alm" / "alm_eval.json").parent.mkdir()
    (run / "alm" / "alm_eval.json").write_text(json.dumps(alm))
    return run, clips


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The page of a run dir with every kind of result and two clips at K = 3, 12."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("report")
    run, clips = make_run_dir(root, load_codec("default"))
    return build_report([run], root / "out", clips=clips, num_codebooks=(3, 12))


def section_ids(html: str) -> set[str]:
    return set(re.findall(r'<section id="([a-z]+)"', html))


def test_page_has_every_section_and_its_files(report):
    html = report.read_text()
    assert section_ids(html) == set(SECTIONS)
    assert "Left out" not in html
    sources = re.findall(r'src="([^"]+)"', html)
    assert sum(s.endswith(".png") for s in sources) == 5  # probe, curves, two spectrograms, usage
    assert sum(s.endswith(".wav") for s in sources) == 2 * 3  # two clips: original, K=3, K=12
    for src in sources:
        assert (report.parent / src).is_file(), src
    assert sf.info(report.parent / next(s for s in sources if s.endswith(".wav"))).subtype == "PCM_16"
    assert "gain-6dB" in html and "15.0%" in html and "K=12 (6 kbps)" in html and "test.accuracy" in html
    assert "caption_examples" not in html and "http" not in html.replace("http-equiv", "")


def test_absent_results_are_left_out_with_a_note(tmp_path):
    (tmp_path / "run").mkdir()
    html = build_report([tmp_path / "run"], tmp_path / "out").read_text()
    assert section_ids(html) == {"omitted"}
    for section in SECTIONS:
        assert f'data-section="{section}"' in html
    assert "no history.jsonl in the run dirs." in html


def test_unreadable_result_is_noted_and_the_rest_goes_on(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "probe.json").write_text('{"features": []}')
    (tmp_path / "run" / "history.jsonl").write_text('{"step": 1, "train/loss": 2.0}\n{"step": 2, "tra')
    html = build_report([tmp_path / "run"], tmp_path / "out").read_text()
    assert "could not read" in html and section_ids(html) >= {"probe", "curves"}


def test_markdown_blocks_reads_headings_tables_lists_and_paragraphs():
    text = "## Title\n\nSome `code` text\nwrapped.\n\n| a | b |\n|---|---:|\n| 1 | 2 |\n\n- one\n- two\n"
    assert markdown_blocks(text) == [
        {"type": "heading", "level": 3, "text": "Title"},
        {"type": "para", "text": "Some code text wrapped."},
        {"type": "table", "headers": ["a", "b"], "rows": [["1", "2"]]},
        {"type": "list", "items": ["one", "two"]},
    ]


def test_cli_prints_the_page(tmp_path, capsys):
    from audiotok.cli import main

    (tmp_path / "run").mkdir()
    assert main(["eval", "report", str(tmp_path / "run"), "-o", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "out" / "index.html")
    assert main(["eval", "report", str(tmp_path / "missing"), "-o", str(tmp_path / "out")]) == 2


def chromium_driver(monkeypatch):
    """Headless Chromium through the Debian driver; Selenium Manager is kept offline (it must fetch nothing)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium: pip install '.[test]'")
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--mute-audio"):
        options.add_argument(arg)
    options.add_argument("--window-size=1280,2000")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


MEDIA_STATE = """return Array.from(document.querySelectorAll('audio')).map(
    a => ({src: a.currentSrc, ready: a.readyState, error: a.error ? a.error.code : null}));"""


@pytest.mark.skipif(
    CHROMIUM is None or not os.path.exists(CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (scripts/install_system_deps.sh as root)",
)
def test_page_loads_in_headless_chromium(report, tmp_path, monkeypatch):
    driver = chromium_driver(monkeypatch)
    try:
        driver.get(report.as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.src, i.complete && i.naturalWidth > 0]);"
        )
        assert len(images) == 5 and all(ok for _, ok in images), images
        deadline = time.monotonic() + 20
        while (
            any(m["ready"] < 1 and m["error"] is None for m in driver.execute_script(MEDIA_STATE))
            and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        media = driver.execute_script(MEDIA_STATE)
        assert len(media) == 6 and all(m["ready"] >= 1 and m["error"] is None for m in media), media
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        width, height = driver.execute_script(
            "return [document.body.scrollWidth, document.documentElement.scrollHeight];"
        )
        driver.set_window_size(max(width, 1280), min(height + 100, 8000))
        shots = [tmp_path / "report.png"] + [Path(p) for p in [os.environ.get("AUDIOTOK_SCREENSHOT")] if p]
        for shot in shots:
            assert driver.save_screenshot(str(shot)), shot
    finally:
        driver.quit()
