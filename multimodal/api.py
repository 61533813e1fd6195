"""``AudioLanguageModel``: captions, answers, embeddings and retrieval from Python.

    from multimodal import AudioLanguageModel
    alm = AudioLanguageModel.from_pretrained("default")
    alm.caption("dog.wav")                              # 'A dog barks, then a bell rings.'
    alm.ask("scene.wav", "How many sounds are there?")  # 'three'
    alm.retrieve("scene.wav", ["a dog barks", "a piano plays"])  # [(text, score), ...] best first

``audio`` is a path, an array or tensor (pass ``sample_rate=``, or give a ``(array, sample_rate)`` tuple),
or `AudioTokens` of the model's codec; a list of them is a batch (and a list of questions pairs with it).
Long audio is encoded in 20 s windows whose states are joined and, past `ALMConfig.max_states`, averaged
down: never cut. Audio past `MAX_SECONDS`, empty or unreadable audio raise `AudioError`; a silent clip gets
`SILENT_CAPTION` / `SILENT_ANSWER`; an empty or overlong question gets a refusal that starts with
`REFUSAL`, never an exception.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from codec.audio import AudioError
from codec.tokens import AudioTokens
from codec.vocab import Vocabulary
from multimodal.encoder import AudioEncoder
from multimodal.model import ALMConfig, AudioLanguageNet
from multimodal.text import TEXT_MODEL, VOCAB_FILE

DEFAULT_ALM = Path(__file__).resolve().parent / "weights" / "default"
ALM_FORMAT = "audiotok-alm"
ALM_VERSION = 1
MAX_SECONDS = 600.0
SILENCE_DBFS = -60.0  # a clip whose RMS is below this is silent
SILENT_CAPTION = "Silence."
SILENT_ANSWER = "the recording is silent"
REFUSAL = "I cannot answer this:"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _lm_path(spec: str) -> Path:
    from tokenlm.cli import DEFAULT_LM

    return DEFAULT_LM if spec == "default" else Path(spec)


class AudioLanguageModel:
    """See the module docstring."""

    def __init__(self, net: AudioLanguageNet, lm_spec: str = "default", provenance: dict | None = None):
        self.net = net.eval()
        self.vocab: Vocabulary = net.vocab
        self.config: ALMConfig = net.cfg
        self.lm_spec = lm_spec
        self.provenance = dict(provenance or {})
        self._codec = None

    # ----------------------------------------------------------------------------- building, I/O
    @classmethod
    def build(cls, cfg: ALMConfig, vocab_json: str | Path, lm: str = "default") -> AudioLanguageModel:
        """A new (untrained) model over the token LM ``lm`` (``default`` or a folder)."""
        from tokenlm.model import TokenLM

        path = _lm_path(lm)
        if not (path / "config.json").is_file():
            raise ValueError(f"{path}: no token LM here; pass lm='default' or a tokenlm export folder")
        encoder = AudioEncoder.from_config(TokenLM.from_pretrained(path), cfg)
        net = AudioLanguageNet(cfg, Vocabulary.load(vocab_json), encoder)
        lm_hash = _sha256(path / "model.safetensors")
        return cls(net.train(), lm, {"lm_sha256": lm_hash})

    def save_pretrained(self, path: str | Path, dtype: torch.dtype | None = None) -> None:
        """``config.json``, ``model.safetensors`` (what trains; the token LM is referenced by name and
        hash), ``text.model`` and ``vocab.json``."""
        from safetensors.torch import save_file

        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {
            k: v.detach().cpu().to(dtype or v.dtype).contiguous()
            for k, v in self.net.trainable_state().items()
        }
        save_file(tensors, str(out / "model.safetensors"))
        src = Path(self.vocab.text_model)
        if src.resolve() != (out / TEXT_MODEL).resolve():
            shutil.copyfile(src, out / TEXT_MODEL)
        Vocabulary(self.vocab.num_codebooks, self.vocab.codebook_size, self.vocab.specials,
                   str(out / TEXT_MODEL)).save(out / VOCAB_FILE)  # fmt: skip
        lm = self.lm_spec if self.lm_spec == "default" else os.path.relpath(_lm_path(self.lm_spec), out)
        config = {"format": ALM_FORMAT, "format_version": ALM_VERSION, "model": asdict(self.config),
                  "encoder": {"lm": lm, "lm_sha256": self.provenance.get("lm_sha256"),
                              "codec_id": self.net.encoder.lm.meta.get("codec_id")},
                  "provenance": {k: v for k, v in self.provenance.items() if k != "lm_sha256"}}  # fmt: skip
        (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, path_or_name: str | os.PathLike = "default") -> AudioLanguageModel:
        """The shipped model (``"default"``) or an export folder of `multimodal.train`."""
        from safetensors.torch import load_file

        from tokenlm.model import TokenLM

        path = DEFAULT_ALM if str(path_or_name) == "default" else Path(path_or_name)
        config_path = path / "config.json"
        if not config_path.is_file():
            raise ValueError(f"{path}: not an audio-language model folder (no config.json)")
        config = json.loads(config_path.read_text())
        if config.get("format") != ALM_FORMAT:
            raise ValueError(
                f"{config_path}: not an audiotok audio-language model ({config.get('format')!r})"
            )
        cfg = ALMConfig.from_dict(config["model"], where=f"{config_path}: model")
        spec = config["encoder"]["lm"]
        lm_path = _lm_path(spec) if spec == "default" else (path / spec)
        want = config["encoder"].get("lm_sha256")
        if want and _sha256(lm_path / "model.safetensors") != want:
            raise ValueError(f"{path} was trained on the token LM with sha256 {want[:12]}, but {lm_path} differs; "
                             "use the token LM it was trained with")  # fmt: skip
        encoder = AudioEncoder.from_config(TokenLM.from_pretrained(lm_path), cfg)
        net = AudioLanguageNet(cfg, Vocabulary.load(path / VOCAB_FILE), encoder)
        net.load_trainable_state(
            {k: v.float() for k, v in load_file(str(path / "model.safetensors")).items()}
        )
        provenance = {**config.get("provenance", {}), "lm_sha256": want}
        return cls(net, spec if spec == "default" else str(lm_path), provenance)

    # ---------------------------------------------------------------------------------- inputs
    @property
    def codec(self) -> Any:
        if self._codec is None:
            from codec.registry import load_codec

            self._codec = load_codec(self.net.encoder.lm.meta.get("codec") or "default")
        return self._codec

    def _clips(self, audio: Any, sample_rate: int | None) -> tuple[list[Any], bool]:
        """The inputs as a list, and whether one was given (not a list)."""
        if isinstance(audio, AudioTokens):
            return [audio], True
        if isinstance(audio, list):
            if not audio:
                raise ValueError("an empty list of audio")
            return audio, False
        return [audio], True

    def _codes(self, clip: Any, sample_rate: int | None) -> list[tuple[torch.Tensor | None, bool]]:
        """One input -> ``[(codes [K, T] or None when silent, silent)]`` (AudioTokens may hold a batch)."""
        if isinstance(clip, AudioTokens):
            want = self.net.encoder.lm.meta.get("codec_id")
            if want and clip.codec_id != want:
                raise ValueError(f"these tokens are of codec {clip.codec_id}; the model reads {want}'s")
            return [(clip.codes[b, :, : int(clip.lengths[b])], False) for b in range(clip.batch_size)]
        if isinstance(clip, (str, os.PathLike)):
            from codec.audio import load_audio

            loaded = load_audio(clip, target_sr=self.codec.sample_rate, max_seconds=MAX_SECONDS)
            wav, sr, name = loaded.wav[0], loaded.sample_rate, str(clip)
        else:
            if isinstance(clip, tuple) and len(clip) == 2:
                clip, sample_rate = clip
            if sample_rate is None:
                raise ValueError(
                    "audio given as an array needs its sample rate: pass sample_rate= or (array, sr)"
                )
            wav = torch.as_tensor(np.asarray(clip, dtype=np.float32))
            if wav.dim() == 2:
                wav = wav.mean(0)
            if wav.dim() != 1:
                raise ValueError(
                    f"audio arrays must be [samples] or [channels, samples], got {tuple(wav.shape)}"
                )
            sr, name = int(sample_rate), "the audio array"
        seconds = wav.shape[-1] / sr
        if wav.numel() == 0:
            raise AudioError(f"{name}: the audio is empty")
        if not torch.isfinite(wav).all():
            raise AudioError(f"{name}: the audio holds NaN or infinite samples")
        if seconds > MAX_SECONDS:
            raise AudioError(
                f"{name}: {seconds:.0f} s is longer than the {MAX_SECONDS:.0f} s this model reads; split it"
            )
        rms = float(wav.pow(2).mean().sqrt())
        if rms == 0 or 20 * np.log10(rms) < SILENCE_DBFS:
            return [(None, True)]
        tokens = self.codec.encode(wav, sr)
        return [(tokens.codes[0, :, : int(tokens.lengths[0])], False)]

    @torch.no_grad()
    def _states(
        self, audio: Any, sample_rate: int | None
    ) -> tuple[list[bool], torch.Tensor, torch.Tensor, bool]:
        clips, single = self._clips(audio, sample_rate)
        items = [c for clip in clips for c in self._codes(clip, sample_rate)]
        silent = [s for _, s in items]
        sounding = [c for c, s in items if not s]
        if sounding:
            states, mask = self.net.encoder.encode_codes(sounding)
        else:
            states, mask = torch.zeros(0, 1, self.net.encoder.dim), torch.zeros(0, 1, dtype=torch.bool)
        return silent, states, mask, single and len(items) == 1

    def _answer(self, audio: Any, questions: list[str], sample_rate: int | None,
                max_tokens: int, silent_text: str) -> list[str] | str:  # fmt: skip
        silent, states, mask, single = self._states(audio, sample_rate)
        if len(questions) == 1 and len(silent) > 1:
            questions = questions * len(silent)
        if len(questions) != len(silent):
            raise ValueError(f"{len(questions)} questions for {len(silent)} audio inputs; give one each")
        pieces, refusals = [], {}
        for i, q in enumerate(questions):
            if not isinstance(q, str):
                raise TypeError(f"a question must be a string, got {type(q).__name__}")
            ids = self.vocab.encode_text(q.strip()) if q.strip() else []
            if q and not q.strip():
                refusals[i] = f"{REFUSAL} the question is empty."
            elif len(ids) > self.config.max_text_tokens:
                refusals[i] = (
                    f"{REFUSAL} the question is too long ({len(ids)} pieces; at most {self.config.max_text_tokens})."
                )
            pieces.append(ids)
        ask = [i for i, s in enumerate(silent) if not s and i not in refusals]
        answers = {}
        if ask:
            row_of = np.cumsum([not s for s in silent]) - 1
            rows = [int(row_of[i]) for i in ask]
            texts = [questions[i].strip() for i in ask]  # what a question encoder reads, as written
            got = self.net.generate(states[rows], mask[rows], [pieces[i] for i in ask], max_tokens, texts)
            answers = {i: self.vocab.decode_text(g) for i, g in zip(ask, got)}
        out = [refusals.get(i) or (silent_text if silent[i] else answers[i]) for i in range(len(silent))]
        return out[0] if single else out

    # ------------------------------------------------------------------------------------- API
    def caption(self, audio: Any, sample_rate: int | None = None, max_tokens: int = 40) -> str | list[str]:
        """A caption of each clip."""
        n = len(self._clips(audio, sample_rate)[0])
        return self._answer(audio, [""] * n, sample_rate, max_tokens, SILENT_CAPTION)

    def ask(self, audio: Any, question: str | list[str], sample_rate: int | None = None,
            max_tokens: int = 12) -> str | list[str]:  # fmt: skip
        """The answer to ``question`` about each clip (a list of questions pairs with a list of audio)."""
        questions = question if isinstance(question, list) else [question]
        # an empty question is refused, not read as "caption this"
        questions = [" " if isinstance(q, str) and not q.strip() else q for q in questions]
        return self._answer(audio, questions, sample_rate, max_tokens, SILENT_ANSWER)

    @torch.no_grad()
    def embed_audio(self, audio: Any, sample_rate: int | None = None) -> np.ndarray:
        """Unit vectors ``[E]`` (or ``[B, E]`` for a list) in the shared audio-text space; a silent clip
        gets zeros."""
        silent, states, mask, single = self._states(audio, sample_rate)
        out = np.zeros((len(silent), self.config.embed_dim), dtype=np.float32)
        if len(states):
            out[[i for i, s in enumerate(silent) if not s]] = self.net.audio_embedding(states, mask).numpy()
        return out[0] if single else out

    @torch.no_grad()
    def embed_text(self, texts: str | list[str]) -> np.ndarray:
        """Unit vectors ``[E]`` (or ``[B, E]``) of texts in the shared space."""
        many = isinstance(texts, list)
        items = texts if many else [texts]
        out = self.net.text_embedding([self.vocab.encode_text(t) for t in items]).numpy()
        return out if many else out[0]

    def retrieve(self, audio: Any, candidates: list[str], sample_rate: int | None = None) -> list:
        """``[(text, cosine), ...]`` of the candidates, best first (a list of audio gives one list each)."""
        if not candidates:
            raise ValueError("no candidate texts to rank")
        a = self.embed_audio(audio, sample_rate)
        t = self.embed_text(list(candidates))
        scores = np.atleast_2d(a) @ t.T
        ranked = [[(candidates[j], float(s[j])) for j in np.argsort(-s, kind="stable")] for s in scores]
        return ranked if a.ndim == 2 else ranked[0]
