"""The tokenize pipeline (codec/tokenize.py): streamed == one pass, ranks == one process, lists, bad input.

A tiny random `AudiotokCodec` stands in for the shipped codec: its chunked encoding and receptive field
are the real ones. Subprocess tests (kill -9 and resume, two ranks under ``accelerate launch``) live in
test_tokenize_processes.py.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch
from bad_inputs import make_corpus
from tiny import tiny_config

import audiotok.cli as audiotok_cli
import codec.pipeline.tokenize as tokenize_module
from codec.audio import StreamResampler, iter_audio_blocks, load_audio, resample_audio
from codec.nn.model import AudiotokCodec, CodecModel
from codec.pipeline.inputs import scan_inputs
from codec.pipeline.tokenize import (
    ChunkedStreamEncoder,
    RankContext,
    TokenizeOptions,
    encode_blocks,
    supports_streaming,
    tokenize,
)
from codec.store import TokenStore, store_items_equal


def tiny_codec(chunk_seconds: float = 30.0, seed: int = 0, **overrides) -> AudiotokCodec:
    torch.manual_seed(seed)
    return AudiotokCodec(CodecModel(tiny_config(**overrides)), chunk_seconds=chunk_seconds)


@pytest.fixture(scope="module")
def codec_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("codec")
    tiny_codec().save_pretrained(path)
    return path


def signal(seconds: float, sr: int = 16000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sr))) / sr
    return (0.4 * np.sin(2 * np.pi * (150 + 700 * t) * t) + 0.05 * rng.standard_normal(len(t))).astype(
        np.float32
    )


def _blocks(x: torch.Tensor, sizes: list[int]):
    start, i = 0, 0
    while start < len(x):
        size = sizes[i % len(sizes)]
        yield x[start : start + size]
        start, i = start + size, i + 1


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("seconds", [0.01, 0.37, 2.43])
def test_stream_encoder_equals_one_pass(causal, seconds):
    one_pass = tiny_codec(chunk_seconds=1000, causal=causal)
    chunked = AudiotokCodec(one_pass.model, chunk_seconds=0.2)  # many chunks, each with context
    wav = torch.from_numpy(signal(seconds))
    expected = one_pass.encode(wav, 16000).item(0)  # (K, T)
    for sizes in ([len(wav)], [1, 319, 4000], [777]):  # one block, odd blocks, a sample at a time too
        codes = encode_blocks(chunked, _blocks(wav, sizes))
        assert torch.equal(codes, expected), sizes
    assert torch.equal(encode_blocks(chunked, _blocks(wav, [500]), num_codebooks=2), expected[:2])


def test_stream_encoder_memory_is_bounded():
    codec = AudiotokCodec(tiny_codec().model, chunk_seconds=0.5)
    encoder = ChunkedStreamEncoder(codec)
    for block in _blocks(torch.from_numpy(signal(6.0)), [3000]):
        encoder.push(block)
        window = (codec.chunk_frames + 2 * codec.context_frames + 2) * codec.hop_length + 3000
        assert len(encoder.buffer) <= window
    assert encoder.finish().shape == (4, 300)


@pytest.mark.parametrize("orig,new", [(44100, 16000), (22050, 16000), (8000, 16000), (48000, 16000)])
def test_stream_resampler_equals_whole(orig, new):
    x = np.stack([signal(1.3, orig), signal(1.3, orig, seed=1)], axis=1)  # (S, 2)
    whole = resample_audio(x, orig, new)
    assert abs(len(whole) - len(x) * new / orig) <= 1
    resampler = StreamResampler(orig, new, channels=2)
    pieces = [resampler.push(x[:0])] + [resampler.push(b) for b in _blocks(x, [1, 999, 4410, 7])]
    streamed = np.concatenate(pieces + [resampler.flush()])
    assert np.array_equal(streamed, whole)  # bit for bit, whatever the block sizes


def test_iter_audio_blocks_equals_load_audio(tmp_path):
    data = np.stack([signal(2.1, 22050), signal(2.1, 22050, seed=1)], axis=1)  # (S, 2)
    sf.write(tmp_path / "a.flac", data, 22050)
    whole = load_audio(tmp_path / "a.flac", 16000).wav
    blocks = list(iter_audio_blocks(tmp_path / "a.flac", 16000, "downmix", block_seconds=0.3))
    assert len(blocks) > 5 and all(b.shape[0] == 1 for b in blocks)
    assert torch.equal(torch.cat(blocks, dim=-1), whole)
    split = load_audio(tmp_path / "a.flac", 16000, "split").wav
    blocks = list(iter_audio_blocks(tmp_path / "a.flac", 16000, "keep", block_seconds=0.17))
    assert torch.equal(torch.cat(blocks, dim=-1), split) and split.shape[0] == 2
    kept = torch.cat(list(iter_audio_blocks(tmp_path / "a.flac", None, "keep", block_seconds=0.5)), dim=-1)
    assert kept.shape == (2, data.shape[0])


def test_long_files_are_streamed_with_the_same_codes(tmp_path):
    """A file over long_seconds goes through blocks + ChunkedStreamEncoder; codes equal one pass."""
    codec = AudiotokCodec(tiny_codec().model, chunk_seconds=0.3)
    one_pass = AudiotokCodec(codec.model, chunk_seconds=1000)
    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "long.wav", signal(2.7), 16000)
    sf.write(tmp_path / "in" / "short.wav", signal(0.4, seed=3), 16000, subtype="FLOAT")
    sf.write(tmp_path / "in" / "long_stereo.wav", np.stack([signal(2.0), signal(2.0, seed=2)], 1), 16000)
    stereo_44k = np.stack([signal(1.9, 44100, seed=4), signal(1.9, 44100, seed=5)], 1)
    sf.write(tmp_path / "in" / "long_44k.flac", stereo_44k, 44100)  # resampled block by block
    files = scan_inputs([str(tmp_path / "in")]).files
    stores = {}
    for name, long_seconds in (("streamed", 1.0), ("whole", 100.0)):
        for channels in ("downmix", "split"):
            options = TokenizeOptions(
                long_seconds=long_seconds, block_seconds=0.23, channels=channels, quiet=True
            )
            out = tmp_path / f"{name}-{channels}"
            summary = tokenize(files, out, codec, options)
            assert summary.failed == 0 and summary.stored == (4 if channels == "downmix" else 6)
            stores[name, channels] = out
    for channels in ("downmix", "split"):
        assert store_items_equal(stores["streamed", channels], stores["whole", channels]) == []
    with TokenStore.open(stores["streamed", "downmix"]) as s:
        wav = load_audio(tmp_path / "in" / "long.wav").wav  # (1, S): the file holds 16-bit samples
        expected = one_pass.encode(wav, 16000).item(0).numpy()
        assert np.array_equal(s.read("long.wav"), expected)
        assert s.row("long.wav")["seconds"] == pytest.approx(2.7)
        wav = load_audio(tmp_path / "in" / "long_44k.flac", 16000).wav  # (1, S)
        assert np.array_equal(s.read("long_44k.flac"), one_pass.encode(wav, 16000).item(0).numpy())


def test_supports_streaming_only_with_a_receptive_field():
    assert supports_streaming(tiny_codec())

    class Adapter:
        sample_rate, num_codebooks = 16000, 2

    assert not supports_streaming(Adapter())
    with pytest.raises(ValueError, match="receptive field"):
        ChunkedStreamEncoder(Adapter())


def _corpus(root, n: int = 6):
    """Files of mixed lengths and rates, plus a relpath that occurs twice (a/x.wav, b/x.wav)."""
    root.mkdir()
    for i in range(n):
        sr = (16000, 22050, 8000)[i % 3]
        sf.write(root / f"f{i}.wav", signal(0.1 + 0.15 * i, sr, seed=i), sr)
    for sub, seed in (("a", 10), ("b", 11)):
        (root / sub).mkdir()
        sf.write(root / sub / "x.wav", signal(0.3, seed=seed), 16000)
    return root


def test_ranks_equal_one_process(tmp_path):
    """Two ranks run one after the other (no process group: rank 1 finds rank 0's store) == one process."""
    codec = tiny_codec()
    root = _corpus(tmp_path / "in")
    files = scan_inputs([str(root / "a"), str(root / "b"), str(root / "*.wav")]).files  # x.wav twice
    options = TokenizeOptions(quiet=True, batch_seconds=0.5)
    single = tokenize(files, tmp_path / "single", codec, options)
    assert single.stored == len(files) == 8
    for rank in (0, 1):
        part = tokenize(files, tmp_path / "ranked", codec, options, ctx=RankContext(rank, 2))
        assert part.stored == len(range(rank, 8, 2)) and part.rank == rank
    assert store_items_equal(tmp_path / "single", tmp_path / "ranked") == []
    names = sorted(p.name for p in (tmp_path / "ranked").iterdir())
    assert "manifest-r0.jsonl" in names and "manifest-r1.jsonl" in names
    with TokenStore.open(tmp_path / "ranked") as s:
        ids = set(s.ids())
        assert "x.wav" in ids and any(i.startswith("x.wav#") for i in ids)  # the later twin gets its hash


def test_jobs_do_not_change_codes(tmp_path):
    codec = tiny_codec()
    files = scan_inputs([str(_corpus(tmp_path / "in"))]).files
    for jobs in (0, 3):
        tokenize(
            files, tmp_path / f"j{jobs}", codec, TokenizeOptions(jobs=jobs, quiet=True, batch_seconds=0.7)
        )
    assert store_items_equal(tmp_path / "j0", tmp_path / "j3") == []


def test_encoder_threads_equal_the_naive_loop(tmp_path, monkeypatch):
    """Batches on several single-threaded encoder threads == one encoder in the main thread == the
    per-file loop a user would write (load_audio, then codec.encode), item for item."""
    codec = tiny_codec(chunk_seconds=0.4)  # items longer than a chunk too
    root = _corpus(tmp_path / "in", n=9)
    sf.write(root / "st44.flac", np.stack([signal(1.1, 44100, seed=7), signal(1.1, 44100, seed=8)], 1), 44100)
    sf.write(root / "mono44.wav", signal(0.9, 44100, seed=9), 44100, subtype="FLOAT")
    files = scan_inputs([str(root)]).files
    torch_threads = torch.get_num_threads()
    for threads, jobs in ((1, 0), (3, 2)):
        monkeypatch.setattr(tokenize_module, "encoder_threads", lambda codec, n=threads: n)
        options = TokenizeOptions(jobs=jobs, quiet=True, batch_seconds=0.5)
        assert tokenize(files, tmp_path / f"e{threads}", codec, options).stored == len(files) == 13
        assert torch.get_num_threads() == torch_threads  # the encoder threads' setting does not leak
    assert store_items_equal(tmp_path / "e1", tmp_path / "e3") == []
    with TokenStore.open(tmp_path / "e3") as s:
        ids = {row["relpath"]: row["id"] for row in s.rows()}
        for f in files:
            expected = codec.encode(load_audio(f.path, 16000).wav, 16000).item(0).numpy()
            assert np.array_equal(s.read(ids[f.relpath]), expected), f.relpath
        # The same samples given to codec.encode at their own rate: one resampler, the same codes.
        raw, sr = sf.read(root / "mono44.wav", dtype="float32")
        assert np.array_equal(
            s.read(ids["mono44.wav"]), codec.encode(torch.from_numpy(raw), sr).item(0).numpy()
        )


def test_list_files(tmp_path, codec_dir, capsys):
    root = _corpus(tmp_path / "in", n=3)
    (tmp_path / "in" / "list.txt").write_text(
        "# a comment\nf0.wav\n\n" + str(root / "a" / "x.wav") + "\nmissing.wav\n"
    )
    (tmp_path / "in" / "list.jsonl").write_text(
        json.dumps({"path": "f1.wav", "text": "hi"}) + "\n" + json.dumps({"path": "b"}) + "\n"
    )
    store = tmp_path / "s"
    code = audiotok_cli.main(
        [
            "tokenize",
            "@" + str(root / "list.txt"),
            "--from-list",
            str(root / "list.jsonl"),
            "-o",
            str(store),
            "--json",
            "--codec",
            str(codec_dir),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 1 and "missing.wav" in err and len(err.strip().splitlines()) == 1
    assert json.loads(out)["stored"] == 4
    with TokenStore.open(store) as s:
        assert sorted(s.ids()) == ["a/x.wav", "b/x.wav", "f0.wav", "f1.wav"]
    (tmp_path / "bad.jsonl").write_text('{"no_path": 1}\n')
    code = audiotok_cli.main(
        ["tokenize", "--from-list", str(tmp_path / "bad.jsonl"), "-o", str(store), "--quiet"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "bad.jsonl: line 1" in err


def test_bad_input_corpus(tmp_path, codec_dir, capsys):
    """Every good file stored, every bad one a line naming it and a failures row; exit status 1."""
    corpus = make_corpus(tmp_path / "corpus")
    assert len(corpus.bad) >= 25, sorted(corpus.bad)
    store = tmp_path / "store"
    args = ["tokenize", str(corpus.root), "-o", str(store), "--codec", str(codec_dir), "--max-seconds", "2.5"]
    code = audiotok_cli.main([*args, "--quiet"])
    _, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 1
    assert all(line.startswith("audiotok: skipped ") for line in lines), lines
    names = {kind: os.path.basename(os.fsdecode(p)) for kind, p in corpus.bad.items()}
    for kind, name in names.items():
        shown = name.encode("utf-8", "backslashreplace").decode()
        assert sum(shown in line for line in lines) == 1, (kind, shown, lines)
    assert len(lines) == len(corpus.bad)
    with TokenStore.open(store) as s:
        failures = {os.path.basename(f["path"]) for f in s.failures()}
        assert failures == {os.fsdecode(n) for n in names.values()}
        stored = {os.path.basename(r["source"]) for r in s.rows()}
        assert stored == {os.path.basename(os.fsdecode(p)) for p in corpus.good.values()}
        assert all(s.read(i).shape[1] >= 1 for i in s.ids())
    code = audiotok_cli.main([*args, "--json"])  # rerun: good files skipped, bad ones fail again
    out, _ = capsys.readouterr()
    summary = json.loads(out)
    assert code == 1 and summary["stored"] == 0 and summary["skipped"] == len(corpus.good)
    code = audiotok_cli.main(["info", str(store), "--json"])
    info = json.loads(capsys.readouterr().out)
    assert info["items"] == len(corpus.good) and info["failures"] == len(corpus.bad)
    assert audiotok_cli.main(["info", str(store)]) == 0
    out = capsys.readouterr().out
    assert "hours" in out and "bits_per_second" in out and "failed: " in out and "more (see" in out


def test_success_exit_status_and_summaries(tmp_path, codec_dir, capsys):
    root = _corpus(tmp_path / "in", n=2)
    store = str(tmp_path / "s")
    assert audiotok_cli.main(["tokenize", str(root), "-o", store, "--codec", str(codec_dir), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert out == "" and err == ""
    assert audiotok_cli.main(["tokenize", str(root), "-o", store, "--codec", str(codec_dir), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["stored"] == 0 and summary["skipped"] == 4 and "audio_seconds_per_second" in summary


def test_store_to_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    from codec.pipeline.hf_datasets import store_to_dataset

    files = scan_inputs([str(_corpus(tmp_path / "in", n=2))]).files
    tokenize(files, tmp_path / "s", tiny_codec(), TokenizeOptions(quiet=True))
    ds = store_to_dataset(tmp_path / "s")
    assert isinstance(ds, datasets.Dataset) and len(ds) == 4
    with TokenStore.open(tmp_path / "s") as s:
        for row in ds:
            assert np.array_equal(np.array(row["codes"]), s.read(row["id"]))
            assert row["frames"] == s.row(row["id"])["frames"]
        assert json.loads(ds.info.description)["codec_id"] == s.meta.codec_id
    on_disk = store_to_dataset(tmp_path / "s", arrow_file=tmp_path / "s.arrow")
    assert len(on_disk) == 4 and on_disk[0]["codes"] == ds[0]["codes"]
