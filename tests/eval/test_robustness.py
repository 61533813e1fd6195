"""eval.robustness and ``audiotok eval robustness``: perturbations keep length and rate, are deterministic and
do what they say (+6 dB, the SNR), code changes are counted right, and the shipped codec's report has every
perturbation with K values per codebook; a missing Opus tool skips its row with the reason."""

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from codec.registry import load_codec
from eval.robustness import CLIP_PEAK, PERTURBATIONS, code_change, pair, perturb, robustness, to_markdown

SR = 16000
HAS_OPUS = shutil.which("opusenc") is not None and shutil.which("opusdec") is not None


def tone(freq=440.0, amp=0.3, seconds=1.0):
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def chirp(amp=0.5, seconds=1.0):
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * (200 * t + 1500 * t**2))).astype(np.float32)


def db(x):
    return 10 * np.log10(np.mean(np.asarray(x, dtype=np.float64) ** 2))


@pytest.fixture(scope="module")
def codec():
    torch.set_num_threads(1)
    return load_codec("default")


def test_code_change_counts_hand_made_codes():
    a = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [0, 0, 0, 0]])
    b = np.array([[1, 2, 3, 4], [5, 0, 7, 0], [9, 9, 9, 9]])
    np.testing.assert_allclose(code_change(a, b), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(code_change(a, a), [0.0, 0.0, 0.0])
    # different lengths: compared over the common frames only
    np.testing.assert_allclose(code_change(a[:, :2], b), [0.0, 0.5, 1.0])
    assert np.isnan(code_change(a[:, :0], b)).all()
    with pytest.raises(ValueError, match="same K"):
        code_change(a, b[:2])


@pytest.mark.parametrize("name", [n for n in PERTURBATIONS if n != "opus_64k" or HAS_OPUS])
def test_perturbation_keeps_length_and_rate_and_is_deterministic(name):
    x = tone(1000.0)
    y = perturb(x, SR, name, seed=3)
    assert y.shape == x.shape and y.dtype == np.float32
    np.testing.assert_array_equal(y, perturb(x, SR, name, seed=3))
    # the sample rate is kept: the tone stays at 1 kHz
    assert np.argmax(np.abs(np.fft.rfft(y))) * SR / len(y) == pytest.approx(1000.0, abs=2.0)
    if name.startswith("noise"):
        assert not np.array_equal(y, perturb(x, SR, name, seed=4))


def test_identity_is_a_copy():
    x = chirp()
    y = perturb(x, SR, "identity")
    np.testing.assert_array_equal(x, y)
    assert y is not x


@pytest.mark.parametrize("snr", [30, 20])
def test_noise_has_the_requested_snr(snr):
    x = chirp()
    y = perturb(x, SR, f"noise_{snr}dB", seed=0)
    assert db(x) - db(y - x) == pytest.approx(snr, abs=0.01)


def test_gain_is_six_db_and_clip_safe():
    x = tone(amp=0.3)
    assert db(perturb(x, SR, "gain+6dB")) - db(x) == pytest.approx(6.0, abs=1e-3)
    assert db(perturb(x, SR, "gain-6dB")) - db(x) == pytest.approx(-6.0, abs=1e-3)
    ref, out = pair(x, SR, "gain+6dB")
    assert ref is x  # 0.3 * 2 does not clip
    loud = tone(amp=0.9)
    ref, out = pair(loud, SR, "gain+6dB")
    assert np.abs(out).max() == pytest.approx(CLIP_PEAK, rel=1e-4)
    assert db(out) - db(ref) == pytest.approx(6.0, abs=1e-3)


def test_shift_delays_by_the_samples():
    x = chirp()
    y = perturb(x, SR, "shift_5ms")
    d = 80  # 5 ms at 16 kHz
    assert not y[:d].any()
    np.testing.assert_array_equal(y[d:], x[:-d])


def test_robustness_on_the_shipped_codec(codec):
    clips = [(tone(), SR, "speech"), (chirp(), SR, "music")]
    report = robustness(codec, clips, perturbations=["identity", "gain-6dB", "noise_20dB"])
    json.dumps(report)  # JSON-able
    k = codec.num_codebooks
    identity = report["results"]["identity"]
    assert identity["overall"]["per_codebook"] == [0.0] * k
    assert set(identity) == {"overall", "speech", "music"}
    noisy = report["results"]["noise_20dB"]["overall"]
    assert len(noisy["per_codebook"]) == k and noisy["clips"] == 2
    assert noisy["at_bitrate"]["3"] == pytest.approx(np.mean(noisy["per_codebook"][:3]), abs=1e-5)
    assert max(noisy["per_codebook"]) > 0  # 20 dB of white noise moves some codes
    assert "| noise_20dB |" in to_markdown(report)


@pytest.fixture
def folder(tmp_path):
    for kind, wav, sr in [
        ("speech", tone(), SR),
        ("music", chirp(0.4), 22050),
        ("sfx", tone(3000.0, 0.9), SR),
    ]:
        (tmp_path / kind).mkdir()
        sf.write(tmp_path / kind / "a.wav", wav, sr)
    return tmp_path


def test_cli_writes_every_perturbation(folder, tmp_path, capsys):
    import audiotok.cli

    out, md = tmp_path / "report.json", tmp_path / "report.md"
    rc = audiotok.cli.main(["eval", "robustness", str(folder), "--out", str(out), "--markdown", str(md)])
    assert rc == 0
    report = json.loads(out.read_text())
    assert list(report["results"]) == list(PERTURBATIONS)
    assert report["meta"]["items"] == {"speech": 1, "music": 1, "sfx": 1}
    k = report["meta"]["num_codebooks"]
    for name, row in report["results"].items():
        if name == "opus_64k" and not HAS_OPUS:
            assert "skipped" in row
            continue
        for key in ("overall", "speech", "music", "sfx"):
            assert len(row[key]["per_codebook"]) == k
            assert set(row[key]["at_bitrate"]) == {"3", "6", "12"}
    assert report["results"]["gain+6dB"]["headroom_scaled_clips"] == 1  # the 0.9 tone
    assert "| shift_5ms |" in capsys.readouterr().out and md.read_text().startswith("Token robustness")


def test_missing_opus_skips_its_row_with_a_reason(folder, tmp_path, monkeypatch, capsys):
    import audiotok.cli
    import eval.baselines

    monkeypatch.setattr(eval.baselines.shutil, "which", lambda tool: None)
    out = tmp_path / "report.json"
    argv = ["eval", "robustness", str(folder), "--perturbations", "identity,opus_64k", "--out", str(out)]
    assert audiotok.cli.main(argv) == 0
    row = json.loads(out.read_text())["results"]["opus_64k"]
    assert row == {"skipped": row["skipped"]} and "opusenc is not installed" in row["skipped"]
    captured = capsys.readouterr()
    assert "| opus_64k | skipped: opusenc is not installed" in captured.out
    assert "perturbation opus_64k skipped" in captured.err


def test_unknown_perturbation_is_a_usage_error(folder, capsys):
    import audiotok.cli

    assert audiotok.cli.main(["eval", "robustness", str(folder), "--perturbations", "reverb"]) == 2
    assert "unknown perturbation 'reverb'" in capsys.readouterr().err
