"""One id space for special tokens, text pieces and audio codes.

Layout (contiguous, in this order)::

    [0, S)                         specials: pad, bos, eos, unk, audio_start, audio_end, text_start, ...
    [S, S + P)                     text pieces: sentencepiece id i -> S + i (absent for audio-only vocabularies)
    [S + P + k * N, S + P + (k+1) * N)  audio codes of codebook k (N = codebook_size, k < K)

Each codebook has its own block of ids, so a flattened sequence still says which codebook a code came
from (the interleaving patterns rely on this). Saved as JSON beside the sentencepiece ``.model`` file; the
model path is stored relative to the JSON so the pair can be moved together.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from codec.tokens import PAD_CODE

DEFAULT_SPECIALS = ("pad", "bos", "eos", "unk", "audio_start", "audio_end", "text_start", "text_end")
VOCAB_FORMAT = "audiotok-vocab"
VOCAB_VERSION = 1


@dataclass
class Vocabulary:
    """Maps specials, text and ``[K, T]`` audio codes to one contiguous id range.

    specials: special token names, ids ``0..len-1`` in this order (must include ``pad`` and ``unk``).
    num_codebooks, codebook_size: the audio code space (K x N ids).
    text_model: path of a sentencepiece ``.model`` file, or None for an audio-only vocabulary.
    """

    num_codebooks: int
    codebook_size: int
    specials: list[str] = field(default_factory=lambda: list(DEFAULT_SPECIALS))
    text_model: str | None = None

    def __post_init__(self) -> None:
        self.specials = list(self.specials)
        if len(set(self.specials)) != len(self.specials):
            raise ValueError(f"special token names must be unique, got {self.specials}")
        for required in ("pad", "unk"):
            if required not in self.specials:
                raise ValueError(f"specials must include {required!r}, got {self.specials}")
        if self.num_codebooks < 1 or self.codebook_size < 1:
            raise ValueError("num_codebooks and codebook_size must be positive")
        self._special_ids = {name: i for i, name in enumerate(self.specials)}
        self._sp = None
        if self.text_model is not None:
            import sentencepiece as spm

            if not Path(self.text_model).is_file():
                raise ValueError(
                    f"{self.text_model}: sentencepiece model not found; check the vocabulary's path."
                )
            self._sp = spm.SentencePieceProcessor(model_file=str(self.text_model))

    # ------------------------------------------------------------------------------------- layout
    @property
    def num_specials(self) -> int:
        return len(self.specials)

    @property
    def text_size(self) -> int:
        return 0 if self._sp is None else self._sp.get_piece_size()

    @property
    def text_offset(self) -> int:
        return self.num_specials

    @property
    def audio_offset(self) -> int:
        return self.num_specials + self.text_size

    def __len__(self) -> int:
        return self.audio_offset + self.num_codebooks * self.codebook_size

    @property
    def size(self) -> int:
        return len(self)

    def special_id(self, name: str) -> int:
        try:
            return self._special_ids[name]
        except KeyError:
            raise KeyError(f"no special token {name!r}; known: {self.specials}") from None

    @property
    def pad_id(self) -> int:
        return self._special_ids["pad"]

    @property
    def unk_id(self) -> int:
        return self._special_ids["unk"]

    @property
    def bos_id(self) -> int:
        return self.special_id("bos")

    @property
    def eos_id(self) -> int:
        return self.special_id("eos")

    def kind_of(self, token_id: int) -> str:
        """``"special"``, ``"text"`` or ``"audio"``."""
        token_id = int(token_id)
        if 0 <= token_id < self.text_offset:
            return "special"
        if token_id < self.audio_offset:
            return "text"
        if token_id < len(self):
            return "audio"
        raise ValueError(f"token id {token_id} is outside the vocabulary [0, {len(self)})")

    # -------------------------------------------------------------------------------------- audio
    def audio_id(self, k: int, code: int) -> int:
        """The id of code ``code`` in codebook ``k``."""
        if not (0 <= k < self.num_codebooks and 0 <= code < self.codebook_size):
            raise ValueError(
                f"(codebook {k}, code {code}) is outside K={self.num_codebooks} x N={self.codebook_size}"
            )
        return self.audio_offset + k * self.codebook_size + code

    def audio_ids(self, codes: Any) -> Any:
        """Codes ``[K', T]`` (K' <= K, tensor or array) to ids of the same shape; PAD_CODE maps to pad_id."""
        arr = _as_int64(codes)
        if arr.ndim != 2 or arr.shape[0] > self.num_codebooks:
            raise ValueError(f"codes must be [K<={self.num_codebooks}, T], got shape {tuple(arr.shape)}")
        pad = arr == PAD_CODE
        if ((arr < 0) & ~pad).any() or (arr >= self.codebook_size).any():
            raise ValueError(f"codes must lie in [0, {self.codebook_size}) or be PAD_CODE")
        offsets = self.audio_offset + np.arange(arr.shape[0], dtype=np.int64)[:, None] * self.codebook_size
        ids = np.where(pad, self.pad_id, arr + offsets)  # (K', T)
        return _like(ids, codes)

    def split_audio_id(self, token_id: int) -> tuple[int, int]:
        """``(codebook k, code)`` of an audio id."""
        if self.kind_of(token_id) != "audio":
            raise ValueError(f"token id {token_id} is not an audio id")
        return divmod(int(token_id) - self.audio_offset, self.codebook_size)

    def decode_audio_ids(self, ids: Any) -> Any:
        """Inverse of `audio_ids`: ids ``[K', T]`` back to codes; pad_id maps to PAD_CODE.

        Raises ValueError if an id in row k is not a code of codebook k.
        """
        arr = _as_int64(ids)
        if arr.ndim != 2 or arr.shape[0] > self.num_codebooks:
            raise ValueError(f"ids must be [K<={self.num_codebooks}, T], got shape {tuple(arr.shape)}")
        offsets = self.audio_offset + np.arange(arr.shape[0], dtype=np.int64)[:, None] * self.codebook_size
        codes = arr - offsets
        pad = arr == self.pad_id
        bad = ~pad & ((codes < 0) | (codes >= self.codebook_size))
        if bad.any():
            k, t = np.argwhere(bad)[0]
            raise ValueError(f"id {arr[k, t]} at (codebook {k}, frame {t}) is not a code of codebook {k}")
        return _like(np.where(pad, PAD_CODE, codes), ids)

    # --------------------------------------------------------------------------------------- text
    def encode_text(self, text: str) -> list[int]:
        """Text to ids (sentencepiece pieces, offset into the text range; no bos/eos added)."""
        if self._sp is None:
            raise ValueError("this vocabulary has no text model (audio-only); build it with text_model=...")
        return [self.text_offset + i for i in self._sp.encode(text)]

    def decode_text(self, ids: list[int]) -> str:
        """Ids to text; specials and audio ids are skipped."""
        if self._sp is None:
            raise ValueError("this vocabulary has no text model (audio-only); build it with text_model=...")
        pieces = [int(i) - self.text_offset for i in ids if self.kind_of(i) == "text"]
        return self._sp.decode(pieces)

    # ---------------------------------------------------------------------------------------- I/O
    def to_json(self, base_dir: str | os.PathLike | None = None) -> dict:
        """A JSON-able dict; the text model path is made relative to ``base_dir`` when given."""
        text_model = self.text_model
        if text_model is not None and base_dir is not None:
            text_model = os.path.relpath(Path(text_model).resolve(), Path(base_dir).resolve())
        return {
            "format": VOCAB_FORMAT,
            "version": VOCAB_VERSION,
            "specials": self.specials,
            "num_codebooks": self.num_codebooks,
            "codebook_size": self.codebook_size,
            "text_model": text_model,
            "text_size": self.text_size,
            "size": len(self),
        }

    @classmethod
    def from_json(cls, obj: dict, base_dir: str | os.PathLike | None = None) -> Vocabulary:
        """Build from `to_json` output; a relative text model path is resolved against ``base_dir``."""
        if (
            not isinstance(obj, dict)
            or obj.get("format") != VOCAB_FORMAT
            or obj.get("version") != VOCAB_VERSION
        ):
            found = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
            raise ValueError(f"not an {VOCAB_FORMAT} v{VOCAB_VERSION} vocabulary (found {found!r}).")
        text_model = obj.get("text_model")
        if text_model is not None and base_dir is not None and not os.path.isabs(text_model):
            text_model = str(Path(base_dir) / text_model)
        vocab = cls(
            num_codebooks=obj["num_codebooks"],
            codebook_size=obj["codebook_size"],
            specials=obj["specials"],
            text_model=text_model,
        )
        if vocab.text_size != obj.get("text_size", vocab.text_size):
            raise ValueError(
                f"{text_model}: has {vocab.text_size} pieces but the vocabulary was built with "
                f"{obj['text_size']}; the JSON and the model do not belong together."
            )
        return vocab

    def save(self, path: str | os.PathLike) -> None:
        """Write the vocabulary JSON (put it beside the sentencepiece model)."""
        path = Path(path)
        path.write_text(json.dumps(self.to_json(base_dir=path.parent), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocabulary:
        path = Path(path)
        try:
            obj = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: cannot be read as a vocabulary JSON ({e}).") from None
        try:
            return cls.from_json(obj, base_dir=path.parent)
        except (KeyError, TypeError) as e:
            raise ValueError(f"{path}: is not a valid vocabulary JSON (bad or missing {e}).") from None
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None


def _as_int64(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x).astype(np.int64, copy=False)


def _like(result: np.ndarray, template: Any) -> Any:
    """Return ``result`` as a torch tensor when ``template`` was one (int64), else as an array."""
    if hasattr(template, "detach"):
        import torch

        return torch.from_numpy(np.ascontiguousarray(result)).to(template.device)
    return result
