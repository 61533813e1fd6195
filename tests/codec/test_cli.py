"""The ``audiotok`` CLI (codec/cli.py): tokenize -> info -> decode, failures, resume, help.

Most tests use `FramewiseCodec`, a deterministic stand-in defined here and substituted for
``codec.cli.load_codec``, so they test the CLI and not any trained model. One test runs a tiny
randomly initialised HF EnCodec saved locally, through the real registry and ``--codec PATH``.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

import audiotok.cli as audiotok_cli
import codec.cli as cli
from codec.store import TokenStore
from codec.tokens import PAD_CODE, AudioTokens, as_batch, resample


class FramewiseCodec:
    """Codes from each 20 ms frame alone (so padding and batch-mates cannot change them).

    Codebook 0: frame loudness (dB, 1.5 dB steps); codebook k > 0: mean |x| of the k-th part of the frame.
    Decoding makes a 440 Hz tone with each frame's loudness.
    """

    sample_rate = 16000
    channels = 1
    frame_rate = 50.0
    codebook_size = 64
    num_codebooks = 4
    codec_id = "framewise-test@0001"
    hop = 320

    def __init__(self) -> None:
        self.encode_calls: list[int] = []  # batch sizes seen, to check batching

    def encode(self, wav, sample_rate, num_codebooks=None, lengths=None) -> AudioTokens:
        wav = resample(as_batch(wav, 1), sample_rate, self.sample_rate)[:, 0]  # (B, S)
        if lengths is None:
            lengths = torch.full((wav.shape[0],), wav.shape[-1])
        lengths = (lengths * self.sample_rate + sample_rate - 1) // sample_rate
        self.encode_calls.append(wav.shape[0])
        frames = -(-lengths // self.hop)  # ceil
        num_frames = int(frames.max())
        padded = torch.zeros(wav.shape[0], num_frames * self.hop)
        for b, n in enumerate(lengths.tolist()):
            padded[b, :n] = wav[b, :n]  # samples past an item's length are ignored
        x = padded.view(wav.shape[0], num_frames, self.hop)  # (B, T, hop)
        db = 20 * torch.log10(x.pow(2).mean(-1).sqrt() + 1e-5)
        loud = ((db + 96) / 1.5).round().clamp(0, 63).long()
        parts = (
            x[..., :318].abs().reshape(wav.shape[0], num_frames, self.num_codebooks - 1, -1).mean(-1)
        )  # (B, T, K-1)
        shape = (parts * 256).floor().clamp(0, 63).long()
        codes = torch.cat([loud[:, None], shape.transpose(1, 2)], dim=1)  # (B, K, T)
        for b, n in enumerate(frames.tolist()):
            codes[b, :, n:] = PAD_CODE
        k = num_codebooks or self.num_codebooks
        return AudioTokens(codes[:, :k], frames, self.frame_rate, self.codebook_size, self.codec_id)

    def decode(self, tokens: AudioTokens) -> torch.Tensor:
        loud = tokens.codes[:, 0].clamp(min=0).float()  # (B, T)
        amplitude = (10 ** ((loud * 1.5 - 96) / 20)) * math.sqrt(2)
        t = torch.arange(tokens.num_frames * self.hop) / self.sample_rate
        wav = amplitude.repeat_interleave(self.hop, dim=1) * torch.sin(2 * math.pi * 440 * t)
        for b, n in enumerate(tokens.lengths.tolist()):
            wav[b, n * self.hop :] = 0
        return wav[:, None]  # (B, 1, S)


@pytest.fixture
def fake_codec(monkeypatch) -> FramewiseCodec:
    codec = FramewiseCodec()
    loaded: list[str | None] = []

    def load(name_or_path=None, device="cpu"):
        loaded.append(name_or_path)
        return codec

    monkeypatch.setattr(cli, "load_codec", load)
    codec.loaded = loaded
    return codec


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    code = audiotok_cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_tokenize_info_decode_round_trip(tmp_path, mixed_audio_folder, fake_codec, capsys):
    store = tmp_path / "store"
    code, out, err = _run(["tokenize", str(mixed_audio_folder), "-o", str(store), "--json"], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["stored"] == 3 and summary["failed"] == 0
    with TokenStore.open(store) as s:
        assert sorted(s.ids()) == ["noise.ogg", "sub/chirp.flac", "tone.wav"]
        assert s.read("tone.wav").shape == (4, 25)  # 0.5 s at 50 Hz
        assert s.read("sub/chirp.flac").shape == (4, 35)  # 0.7 s at 22.05 kHz, resampled
        # the stored codes are exactly those of encoding the file alone
        wav = torch.from_numpy(sf.read(mixed_audio_folder / "tone.wav", dtype="float32")[0])
        alone = fake_codec.encode(wav, 16000).item(0).numpy()
        assert np.array_equal(s.read("tone.wav"), alone)

    code, out, _ = _run(["info", str(store), "--json"], capsys)
    info = json.loads(out)
    assert code == 0 and info["items"] == 3 and info["frame_rate"] == 50.0 and info["num_codebooks"] == 4
    assert info["bits_per_second"] == pytest.approx(4 * 6 * 50)
    assert info["frames"] == 25 + 35 + 20 and info["seconds"] == pytest.approx(1.6, abs=1e-3)
    assert info["failures"] == 0 and info["codec_id"] == fake_codec.codec_id

    code, out, _ = _run(["info", str(store)], capsys)
    assert code == 0 and "bits_per_second" in out and "framewise-test@0001" in out

    out_dir = tmp_path / "decoded"
    code, _, err = _run(["decode", str(store), "-o", str(out_dir)], capsys)
    assert code == 0, err
    written = sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*.wav"))
    assert written == ["noise.wav", "sub/chirp.wav", "tone.wav"]
    tone, sr = sf.read(out_dir / "tone.wav")
    assert sr == 16000 and len(tone) == 8000  # trimmed to the source's length
    chirp, _ = sf.read(out_dir / "sub" / "chirp.wav")
    assert len(chirp) == round(0.7 * 16000)
    # the tone's loudness survives: RMS within 1.5 dB
    assert abs(20 * np.log10(np.sqrt(np.mean(tone**2)) / (0.5 / np.sqrt(2)))) < 1.5

    code, _, _ = _run(
        ["decode", str(store), "-o", str(tmp_path / "one"), "--ids", "tone.wav", "--quiet"], capsys
    )
    assert code == 0 and [p.name for p in (tmp_path / "one").rglob("*.wav")] == ["tone.wav"]
    code, _, err = _run(["decode", str(store), "-o", str(tmp_path / "x"), "--ids", "nope"], capsys)
    assert code == 2 and "nope" in err


def test_bad_files_reported_good_files_stored(tmp_path, write_tone, fake_codec, capsys):
    corpus = tmp_path / "corpus"
    write_tone(corpus / "good1.wav")
    write_tone(corpus / "good2.flac", seconds=0.3)
    (corpus / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(100))
    sf.write(corpus / "empty.wav", np.zeros((0, 1)), 16000)
    missing = str(tmp_path / "missing.wav")
    code, _, err = _run(["tokenize", str(corpus), missing, "-o", str(tmp_path / "s"), "--quiet"], capsys)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("audiotok: skipped ") for line in lines)
    assert any("corrupt.wav" in line for line in lines) and any("empty.wav" in line for line in lines)
    assert any("missing.wav" in line for line in lines)
    with TokenStore.open(tmp_path / "s") as s:
        assert sorted(s.ids()) == ["good1.wav", "good2.flac"]
        assert len(s.failures()) == 3
    code, out, _ = _run(["info", str(tmp_path / "s"), "--json"], capsys)
    assert json.loads(out)["failures"] == 3


def test_rerun_skips_done_items(tmp_path, write_tone, write_noise, fake_codec, capsys):
    corpus = tmp_path / "corpus"
    write_tone(corpus / "a.wav")
    store = str(tmp_path / "s")
    assert _run(["tokenize", str(corpus), "-o", store, "--quiet"], capsys)[0] == 0
    first = (tmp_path / "s" / "shard-r0-00000.bin").read_bytes()
    write_noise(corpus / "b.wav")
    (corpus / "a_copy.wav").write_bytes((corpus / "a.wav").read_bytes())  # same content, other name
    code, out, _ = _run(["tokenize", str(corpus), "-o", store, "--json"], capsys)
    summary = json.loads(out)
    assert code == 0 and summary["stored"] == 1 and summary["skipped"] == 2 and summary["items_total"] == 2
    assert (tmp_path / "s" / "shard-r0-00000.bin").read_bytes().startswith(first)
    code, out, _ = _run(["tokenize", str(corpus), "-o", store, "--json"], capsys)
    assert json.loads(out)["stored"] == 0


def test_split_channels_and_batching(tmp_path, write_tone, write_chirp, fake_codec, capsys):
    corpus = tmp_path / "corpus"
    write_tone(corpus / "stereo.wav", channels=2)
    for i in range(4):
        write_chirp(corpus / f"c{i}.wav", seconds=0.2 + 0.1 * i)
    store = tmp_path / "s"
    code, _, _ = _run(["tokenize", str(corpus), "-o", str(store), "--channels", "split", "--quiet"], capsys)
    assert code == 0 and max(fake_codec.encode_calls) > 1  # items were batched
    with TokenStore.open(store) as s:
        assert {"stereo.wav#ch0", "stereo.wav#ch1"} <= set(s.ids()) and len(s) == 6
        assert s.row("stereo.wav#ch1")["channel"] == 1
        # batched codes equal codes of each file alone
        for i in range(4):
            wav = torch.from_numpy(sf.read(corpus / f"c{i}.wav", dtype="float32")[0])
            assert np.array_equal(
                s.read(f"c{i}.wav#ch0"), FramewiseCodec().encode(wav, 16000).item(0).numpy()
            )
    out_dir = tmp_path / "dec"
    assert _run(["decode", str(store), "-o", str(out_dir), "--quiet"], capsys)[0] == 0
    assert (out_dir / "stereo.ch0.wav").exists() and (out_dir / "stereo.ch1.wav").exists()


def test_reopen_with_other_codec_or_k_is_a_usage_error(tmp_path, write_tone, fake_codec, capsys):
    write_tone(tmp_path / "a.wav")
    store = str(tmp_path / "s")
    assert (
        _run(["tokenize", str(tmp_path / "a.wav"), "-o", store, "--num-codebooks", "2", "--quiet"], capsys)[0]
        == 0
    )
    with TokenStore.open(store) as s:
        assert s.meta.num_codebooks == 2 and s.read("a.wav").shape[0] == 2
    code, _, err = _run(["tokenize", str(tmp_path / "a.wav"), "-o", store, "--quiet"], capsys)
    assert code == 2 and "K=2" in err and "audiotok: error:" in err
    code, _, err = _run(["tokenize", str(tmp_path / "a.wav"), "-o", store, "--num-codebooks", "9"], capsys)
    assert code == 2 and "--num-codebooks" in err


def test_info_on_a_non_store_is_a_clear_error(tmp_path, capsys):
    code, _, err = _run(["info", str(tmp_path)], capsys)
    assert code == 2 and "meta.json" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", [[], ["tokenize"], ["decode"], ["info"]])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        audiotok_cli.main([*command, "--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0 and "usage: audiotok" in out
    if command == ["tokenize"]:
        assert "--num-codebooks" in out and "--max-seconds" in out


def test_missing_subcommand_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        audiotok_cli.main([])
    assert info.value.code == 2


def test_module_entry_point_runs():
    result = subprocess.run(
        [sys.executable, "-m", "audiotok", "info", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "--json" in result.stdout


def test_plugin_hook_skips_missing_but_raises_broken(tmp_path, monkeypatch, capsys):
    import argparse

    (tmp_path / "good_plugin_t.py").write_text(
        "def register(subparsers):\n"
        "    p = subparsers.add_parser('hello', help='say hello')\n"
        "    p.set_defaults(func=lambda args: print('hello') or 0)\n"
    )
    (tmp_path / "broken_plugin_t.py").write_text("import dependency_that_is_not_installed_t\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(
        audiotok_cli, "COMMAND_MODULES", ("codec.no_such_plugin", "no_such_package.cli", "good_plugin_t")
    )
    assert _run(["hello"], capsys)[:2] == (0, "hello\n")  # missing plugins skipped, present one registered
    monkeypatch.setattr(audiotok_cli, "COMMAND_MODULES", ("broken_plugin_t",))
    with pytest.raises(ModuleNotFoundError, match="dependency_that_is_not_installed_t"):
        audiotok_cli.register_commands(argparse.ArgumentParser().add_subparsers())


def test_encodec_folder_as_codec(tmp_path, mixed_audio_folder, capsys):
    """The real registry with a tiny random HF EnCodec saved locally, passed as --codec PATH."""
    from codec.pretrained import save_tiny_random_model

    model_dir = save_tiny_random_model("encodec", tmp_path / "encodec", sample_rate=16000)
    loaded = cli.load_codec(str(model_dir))
    store = tmp_path / "s"
    code, _, err = _run(
        ["tokenize", str(mixed_audio_folder), "-o", str(store), "--codec", str(model_dir), "--quiet"], capsys
    )
    assert code == 0, err
    code, out, _ = _run(["info", str(store), "--json"], capsys)
    info = json.loads(out)
    assert info["items"] == 3 and info["frame_rate"] == pytest.approx(loaded.frame_rate)
    expected_bps = loaded.num_codebooks * math.log2(loaded.codebook_size) * loaded.frame_rate
    assert info["bits_per_second"] == pytest.approx(expected_bps)
    out_dir = tmp_path / "dec"
    code, _, err = _run(["decode", str(store), "-o", str(out_dir), "--quiet"], capsys)  # codec from meta.json
    assert code == 0, err
    tone, sr = sf.read(out_dir / "tone.wav")
    assert sr == loaded.sample_rate and len(tone) == round(0.5 * loaded.sample_rate)
