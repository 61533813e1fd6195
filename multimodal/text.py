"""The text side of the unified vocabulary: a sentencepiece model of the project's captions, questions and
answers, joined with the audio codes into one `codec.vocab.Vocabulary` (specials, text pieces, K x N codes).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from codec.vocab import Vocabulary

TEXT_MODEL = "text.model"
VOCAB_FILE = "vocab.json"


def train_vocabulary(
    texts: Iterable[str], out_dir: str | Path, num_codebooks: int, codebook_size: int, size: int = 1000
) -> Vocabulary:
    """Train a unigram sentencepiece model on ``texts`` into ``out_dir/text.model`` and save the unified
    vocabulary as ``out_dir/vocab.json``. ``size`` is an upper bound: a small corpus gets fewer pieces."""
    import sentencepiece as spm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = sorted({t.strip() for t in texts if t and t.strip()})
    if not lines:
        raise ValueError("no text to train the vocabulary on")
    spm.SentencePieceTrainer.train(  # one thread: the same pieces on every machine
        sentence_iterator=iter(lines), model_prefix=str(out / "text"), vocab_size=size, model_type="unigram",
        character_coverage=1.0, hard_vocab_limit=False, unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1,
        num_threads=1, minloglevel=2,
    )  # fmt: skip
    vocab = Vocabulary(num_codebooks, codebook_size, text_model=str(out / TEXT_MODEL))
    vocab.save(out / VOCAB_FILE)
    return vocab


def normalize_answer(text: str) -> str:
    """What an answer is compared by: lowercase, no accents' variants (NFKC), no punctuation, single spaces."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"[^\w\s'-]", " ", text)
    return " ".join(text.split())
