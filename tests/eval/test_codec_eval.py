"""eval.codec_eval and ``audiotok eval codec``: a tiny lossy fake codec through the whole evaluation,
reports with the right keys, quality that improves with codebooks, bad files recorded, manifests read."""

import json
import math
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from codec.tokens import AudioTokens, as_batch, resample
from eval.baselines import parse_baselines
from eval.codec_eval import evaluate_codec
from eval.codec_items import collect_items
from eval.codec_report import CodecReport
from eval.metrics import METRIC_NAMES

SR = 16000


class MuLawHoldCodec:
    """A lossy framewise codec implementing the Codec protocol: each frame of ``hop`` samples is its mean,
    mu-law companded and written as K base-``codebook_size`` digits (a residual scalar quantizer), so
    every extra codebook refines the value; decoding holds each value for the frame."""

    sample_rate = SR
    channels = 1
    hop = 4
    frame_rate = SR / hop
    codebook_size = 16
    num_codebooks = 3
    codec_id = "mulaw-hold-test"
    mu = 255.0

    def encode(self, wav, sample_rate, num_codebooks=None, lengths=None):
        k = num_codebooks or self.num_codebooks
        x = resample(as_batch(wav, 1), sample_rate, SR)[:, 0]  # [B, S]
        frames = -(-x.shape[-1] // self.hop)
        x = torch.nn.functional.pad(x, (0, frames * self.hop - x.shape[-1]))
        v = x.reshape(x.shape[0], frames, self.hop).mean(-1).clamp(-1, 1)  # [B, T]
        y = (torch.sign(v) * torch.log1p(self.mu * v.abs()) / math.log1p(self.mu) + 1) / 2  # [0, 1]
        digits = []
        for _ in range(k):
            y = y * self.codebook_size
            d = y.floor().clamp(0, self.codebook_size - 1)
            digits.append(d.long())
            y = y - d
        codes = torch.stack(digits, dim=1)  # [B, K, T]
        return AudioTokens(
            codes, torch.full((x.shape[0],), frames), self.frame_rate, self.codebook_size, self.codec_id
        )

    def decode(self, tokens):
        codes = tokens.codes.double()  # [B, K, T]
        scale = self.codebook_size ** -torch.arange(1, codes.shape[1] + 1, dtype=torch.float64)
        y = (codes * scale[None, :, None]).sum(1) + 0.5 * scale[-1]  # [B, T], centre of the last cell
        c = 2 * y - 1
        v = torch.sign(c) * ((1 + self.mu) ** c.abs() - 1) / self.mu
        return v.float().repeat_interleave(self.hop, dim=-1)[:, None]  # [B, 1, T * hop]


def write_tone(path, seconds=0.6, sr=SR, freq=220.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, 12)) * (
        0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    )
    x = 0.2 * x + 0.005 * rng.standard_normal(len(t))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, sr)
    return path


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    rows = [
        ("speech/a.wav", "speech", "test", 0),
        ("speech/b.wav", "speech", "train", 1),
        ("music/c.wav", "music", "test", 2),
        ("sfx/d.wav", "sfx", "test", 3),
    ]
    for rel, _, _, seed in rows:
        write_tone(root / rel, sr=22050 if seed == 2 else SR, freq=150 + 50 * seed, seed=seed)
    with open(root / "manifest.jsonl", "w") as f:
        for rel, kind, split, _ in rows:
            f.write(json.dumps({"path": rel, "kind": kind, "split": split, "source": "test"}) + "\n")
    return root


def test_evaluate_codec_report(corpus, tmp_path):
    items = collect_items(corpus, split="test")
    assert [(p.name, k) for p, k in items] == [("c.wav", "music"), ("d.wav", "sfx"), ("a.wav", "speech")]
    broken = tmp_path / "broken.wav"
    broken.write_text("not audio")
    items.append((broken, "speech"))
    codec = MuLawHoldCodec()
    report = evaluate_codec(codec, items, [1, 2, 3], [], split="test")
    assert isinstance(report, CodecReport)
    assert len(report.failures) == 1 and report.failures[0]["system"] == "load"
    assert "broken.wav" in report.failures[0]["error"]
    assert len(report.items) == 3 * 3
    assert {(r.setting, r.kind) for r in report.summary} == {
        (f"K={k}", kind) for k in (1, 2, 3) for kind in ("speech", "music", "sfx")
    }

    speech = {r.setting: r for r in report.summary if r.kind == "speech"}
    mel = [speech[f"K={k}"].metrics["mel_distance"]["mean"] for k in (1, 2, 3)]
    assert mel[0] > mel[1] > mel[2]  # every codebook refines
    assert speech["K=3"].metrics["pesq_wb"]["mean"] > speech["K=1"].metrics["pesq_wb"]["mean"]
    assert speech["K=2"].nominal_bps == 2 * 4 * codec.frame_rate
    assert speech["K=2"].measured_bps == pytest.approx(speech["K=2"].nominal_bps, rel=0.01)
    assert speech["K=1"].encode_x_realtime > 0 and speech["K=1"].decode_x_realtime > 0
    music = [r for r in report.summary if r.kind == "music"][0]
    assert music.metrics["pesq_wb"] == {"mean": None, "median": None, "n": 0}

    data = json.loads(report.to_json(tmp_path / "r.json"))
    assert json.loads((tmp_path / "r.json").read_text()) == data
    assert set(data) == {"format", "meta", "summary", "items", "failures"}
    assert data["meta"]["split"] == "test" and data["meta"]["codec"]["codec_id"] == codec.codec_id
    # ViSQOL was not asked for: no implementation named, no column
    assert set(data["meta"]["metric_implementations"]) == set(METRIC_NAMES) - {"visqol"}
    assert set(data["summary"][0]["metrics"]) == set(METRIC_NAMES)
    assert data["summary"][0]["metrics"]["visqol"]["n"] == 0

    md = report.to_markdown()
    for heading in ("### speech (1 items)", "### music (1 items)", "### sfx (1 items)"):
        assert heading in md
    assert "| system | setting | kbps (nominal) | kbps (measured) |" in md
    assert "| mulaw-hold-test | K=3 |" in md and "broken.wav" in md
    assert "visqol" not in md


@pytest.mark.skipif(shutil.which("opusenc") is None, reason="opus-tools not installed")
def test_evaluate_with_baseline_and_silence(tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(SR // 2), SR)
    tone = write_tone(tmp_path / "tone.wav")
    report = evaluate_codec(
        MuLawHoldCodec(), [(path, "speech"), (tone, "speech")], [3], parse_baselines("opus12")
    )
    assert not report.failures
    opus = [r for r in report.summary if r.system == "opus12"][0]
    assert opus.measured_bps == pytest.approx(12000, rel=0.1)
    assert opus.metrics["pesq_wb"]["n"] == 1  # undefined on silence, left out of the mean
    silent = [r for r in report.items if r.path == str(path)][0]
    assert math.isnan(silent.metrics.pesq_wb) and "silent" in silent.metrics.notes["pesq_wb"]
    assert "[1]" in report.to_markdown()


def test_bad_arguments(corpus):
    items = collect_items(corpus, split="test")
    with pytest.raises(ValueError, match="out of range"):
        evaluate_codec(MuLawHoldCodec(), items, [4], [])
    with pytest.raises(ValueError, match="kind"):
        evaluate_codec(MuLawHoldCodec(), [(items[0][0], "podcast")], [1], [])
    with pytest.raises(ValueError, match="no rows"):
        collect_items(corpus, split="valid")
    with pytest.raises(ValueError, match="neither"):
        collect_items(corpus / "missing")


def test_collect_items_folder_and_limits(corpus, tmp_path):
    items = collect_items(corpus, split=None)
    assert len(items) == 4
    assert [k for _, k in collect_items(corpus, kind="speech", split=None)] == ["speech", "speech"]
    assert len(collect_items(corpus, split=None, limit=1)) == 3  # one per kind
    # a plain folder: kind from folder names, else speech; or forced
    plain = tmp_path / "plain"
    write_tone(plain / "music" / "x.wav")
    write_tone(plain / "y.flac")
    assert sorted(k for _, k in collect_items(plain, kind="auto")) == ["music", "speech"]
    assert {k for _, k in collect_items(plain, kind="sfx")} == {"sfx"}
    with pytest.raises(ValueError, match="source or language filter needs a corpus manifest"):
        collect_items(plain, sources=["test"])
    # a source filter keeps the rows of those packages only (e.g. recorded music apart from rendered MIDI)
    rows = [json.loads(x) for x in (corpus / "manifest.jsonl").read_text().splitlines()]
    rows[2]["source"] = "0ad-data"
    (corpus / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [p.name for p, _ in collect_items(corpus, sources=["0ad-data"])] == ["c.wav"]
    assert [p.name for p, _ in collect_items(corpus, sources=["test", "0ad-data"])] == [
        "c.wav",
        "d.wav",
        "a.wav",
    ]
    with pytest.raises(ValueError, match="source in \\['nobody'\\]"):
        collect_items(corpus, sources=["nobody"])
    (corpus / "manifest.jsonl").write_text('{"kind": "speech"}\n')
    with pytest.raises(ValueError, match="manifest.jsonl:1"):
        collect_items(corpus)


def test_cli(corpus, tmp_path, monkeypatch, capsys):
    import audiotok.cli
    import codec.cli

    monkeypatch.setattr(codec.cli, "load_codec", lambda name, device="cpu": MuLawHoldCodec())
    out, md = tmp_path / "r.json", tmp_path / "r.md"
    rc = audiotok.cli.main(
        [
            "eval",
            "codec",
            str(corpus),
            "--codec",
            "fake",
            "--num-codebooks",
            "1,3",
            "--baselines",
            "none",
            "--out",
            str(out),
            "--markdown",
            str(md),
            "--quiet",
        ]
    )
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["meta"]["num_codebooks"] == [1, 3] and data["meta"]["baselines"] == []
    assert len(data["items"]) == 2 * 3
    assert "### speech" in md.read_text()
    rc = audiotok.cli.main(["eval", "codec", str(corpus), "--num-codebooks", "9", "--baselines", "none"])
    assert rc == 2 and "out of range" in capsys.readouterr().err
    rc = audiotok.cli.main(["eval", "codec", str(corpus), "--baselines", "mp3"])
    assert rc == 2 and "unknown baseline" in capsys.readouterr().err
