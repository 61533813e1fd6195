"""The shared id space of specials, text pieces and audio codes (codec/vocab.py)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from codec.tokens import PAD_CODE
from codec.vocab import DEFAULT_SPECIALS, Vocabulary

SENTENCES = [
    "a dog barks in the distance",
    "rain falls on a tin roof",
    "a woman speaks while birds sing",
    "music plays softly with a piano",
    "the engine of a car starts and idles",
    "people talk in a busy restaurant",
    "a bell rings three times",
    "waves crash on the beach at night",
]


@pytest.fixture(scope="module")
def sp_model(tmp_path_factory) -> str:
    spm = pytest.importorskip("sentencepiece")
    folder = tmp_path_factory.mktemp("sp")
    text = folder / "text.txt"
    text.write_text("\n".join(SENTENCES * 4) + "\n")
    spm.SentencePieceTrainer.train(
        input=str(text),
        model_prefix=str(folder / "tiny"),
        vocab_size=50,
        model_type="unigram",
        character_coverage=1.0,
        num_threads=1,
        minloglevel=2,
    )
    return str(folder / "tiny.model")


def test_audio_only_layout_is_contiguous():
    vocab = Vocabulary(num_codebooks=3, codebook_size=10)
    assert vocab.text_size == 0 and len(vocab) == len(DEFAULT_SPECIALS) + 30
    ids = [vocab.special_id(s) for s in vocab.specials]
    ids += [vocab.audio_id(k, c) for k in range(3) for c in range(10)]
    assert ids == list(range(len(vocab)))  # unique and contiguous
    assert vocab.kind_of(0) == "special" and vocab.kind_of(len(vocab) - 1) == "audio"
    assert vocab.split_audio_id(vocab.audio_id(2, 7)) == (2, 7)
    with pytest.raises(ValueError):
        vocab.kind_of(len(vocab))
    with pytest.raises(ValueError):
        vocab.encode_text("no text model")


def test_with_text_ids_unique_and_contiguous(sp_model):
    vocab = Vocabulary(num_codebooks=2, codebook_size=16, text_model=sp_model)
    assert vocab.text_size == 50
    kinds = [vocab.kind_of(i) for i in range(len(vocab))]
    assert kinds == ["special"] * len(DEFAULT_SPECIALS) + ["text"] * 50 + ["audio"] * 32
    assert vocab.audio_id(0, 0) == vocab.audio_offset == len(DEFAULT_SPECIALS) + 50


def test_audio_ids_round_trip_numpy_and_torch():
    vocab = Vocabulary(num_codebooks=4, codebook_size=32)
    codes = np.random.default_rng(0).integers(0, 32, size=(4, 9))
    codes[:, -2:] = PAD_CODE
    ids = vocab.audio_ids(codes)
    assert ids.shape == (4, 9) and (ids[:, -2:] == vocab.pad_id).all()
    assert ids[1, 0] == vocab.audio_id(1, codes[1, 0])
    assert np.array_equal(vocab.decode_audio_ids(ids), codes)
    t_ids = vocab.audio_ids(torch.from_numpy(codes))
    assert isinstance(t_ids, torch.Tensor) and torch.equal(
        vocab.decode_audio_ids(t_ids), torch.from_numpy(codes)
    )
    assert np.array_equal(vocab.audio_ids(codes[:2]), ids[:2])  # first k codebooks


def test_audio_ids_reject_wrong_rows_and_ranges():
    vocab = Vocabulary(num_codebooks=2, codebook_size=8)
    ids = vocab.audio_ids(np.array([[1, 2], [3, 4]]))
    with pytest.raises(ValueError, match="codebook 0"):
        vocab.decode_audio_ids(ids[::-1])  # codebook-1 ids in row 0
    with pytest.raises(ValueError):
        vocab.audio_ids(np.array([[8]]))
    with pytest.raises(ValueError):
        vocab.audio_ids(np.zeros((3, 2), dtype=int))


def test_mixed_text_audio_sequence_round_trips(sp_model):
    vocab = Vocabulary(num_codebooks=2, codebook_size=16, text_model=sp_model)
    text = "a dog barks on the beach"
    codes = np.array([[1, 5, 15], [0, 2, 9]])
    audio_flat = vocab.audio_ids(codes).T.reshape(-1).tolist()  # frame-major flatten
    sequence = (
        [vocab.bos_id, vocab.special_id("text_start")]
        + vocab.encode_text(text)
        + [vocab.special_id("text_end"), vocab.special_id("audio_start")]
        + audio_flat
        + [vocab.special_id("audio_end"), vocab.eos_id]
    )
    assert vocab.decode_text(sequence) == text
    audio_back = [vocab.split_audio_id(i) for i in sequence if vocab.kind_of(i) == "audio"]
    rebuilt = np.zeros_like(codes)
    for n, (k, code) in enumerate(audio_back):
        assert k == n % 2
        rebuilt[k, n // 2] = code
    assert np.array_equal(rebuilt, codes)


def test_json_round_trip_with_relative_model(tmp_path, sp_model):
    folder = tmp_path / "tok"
    folder.mkdir()
    shutil.copy(sp_model, folder / "text.model")
    vocab = Vocabulary(
        num_codebooks=3,
        codebook_size=64,
        text_model=str(folder / "text.model"),
        specials=[*DEFAULT_SPECIALS, "caption", "question"],
    )
    vocab.save(folder / "vocab.json")
    saved = json.loads((folder / "vocab.json").read_text())
    assert saved["text_model"] == "text.model" and saved["size"] == len(vocab)
    moved = tmp_path / "moved"
    shutil.move(folder, moved)  # the pair moves together
    loaded = Vocabulary.load(moved / "vocab.json")
    assert loaded.to_json() | {"text_model": None} == vocab.to_json() | {"text_model": None}
    assert loaded.encode_text("rain on a roof") == vocab.encode_text("rain on a roof")
    assert loaded.special_id("question") == len(DEFAULT_SPECIALS) + 1
    audio_only = Vocabulary(num_codebooks=2, codebook_size=5)
    assert Vocabulary.from_json(json.loads(json.dumps(audio_only.to_json()))) == audio_only


def test_bad_config_errors(tmp_path):
    with pytest.raises(ValueError, match="unique"):
        Vocabulary(num_codebooks=1, codebook_size=4, specials=["pad", "unk", "pad"])
    with pytest.raises(ValueError, match="pad"):
        Vocabulary(num_codebooks=1, codebook_size=4, specials=["unk"])
    with pytest.raises(ValueError, match="missing.model"):
        Vocabulary(num_codebooks=1, codebook_size=4, text_model=str(tmp_path / "missing.model"))
    (tmp_path / "v.json").write_text("[1, 2]")
    with pytest.raises(ValueError):
        Vocabulary.load(tmp_path / "v.json")
