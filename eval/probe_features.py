"""Frozen features for the representation probes (eval/probe.py): one vector per clip.

Each feature reads a clip's audio at 16 kHz and gives a sequence of frames ``[T, D]``, which is pooled to
one vector ``[2 D]``: the mean and the (population) standard deviation over time, concatenated.

- ``logmel``: 64-band log-mel (25 ms window, 10 ms hop, HTK scale, ``log(x + 1e-6)``), the baseline;
- ``codec-latents``: the codec encoder's continuous latents before quantization ``[T, 256]``;
- ``codec-tokens``: the codec's own codes embedded by its codebooks, i.e. the quantized latents
  (``quantizer.decode_codes``) ``[T, 256]``;
- ``lm-layer-i``: the token LM's states over the clip's cells (BOS dropped): layer 0 is the summed code
  embeddings, layer i the output of decoder layer i (no final norm); ``lm`` names all of them;
- ``alm``: the audio-language model's pooled encoder states, the input of its audio projection (its
  masked mean is what ``audio_embedding`` projects).

Everything is computed one clip at a time (clips differ in length; no padding can leak in), and cached
per (feature, split) as ``.npy`` beside a JSON index of the clips and the weights that made each file.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

SAMPLE_RATE = 16000
MAX_CLIP_SECONDS = 10.0  # a probe clip is one event; longer crops are cut here
BASE_FEATURES = ("logmel", "codec-latents", "codec-tokens", "lm", "alm")
LOGMEL_VERSION = "logmel64-n400-h160-v1"


@dataclass(frozen=True)
class Clip:
    """The span ``start .. end`` seconds of an audio file."""

    path: Path
    start: float
    end: float

    @property
    def key(self) -> str:
        return f"{self.path.as_posix()}@{self.start:.3f}-{self.end:.3f}"

    def load(self) -> torch.Tensor:
        """The cropped mono audio ``[S]`` at 16 kHz (at least one sample)."""
        from codec.audio import load_audio

        wav = load_audio(self.path, target_sr=SAMPLE_RATE).wav[0]
        end = min(self.end, self.start + MAX_CLIP_SECONDS)
        lo = max(0, int(round(self.start * SAMPLE_RATE)))
        hi = max(lo + 1, int(round(end * SAMPLE_RATE)))
        return wav[lo:hi]


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _default_alm() -> Path:
    """Where the shipped audio-language model lives (it may not be there yet)."""
    import importlib.util

    return Path(importlib.util.find_spec("multimodal").origin).parent / "weights" / "default"


class Models:
    """The frozen models behind the features, loaded on first use: the codec (``default`` or a folder of
    an audiotok codec), the token LM (``default`` or an export folder) and, when given, the ALM folder."""

    def __init__(self, codec: str = "default", lm: str = "default", alm: str | Path | None = None):
        self.codec_spec, self.lm_spec = codec, lm
        self.alm_path = Path(alm) if alm else _default_alm()

    @cached_property
    def codec(self):
        from codec.nn.model import AudiotokCodec
        from codec.registry import load_codec

        codec = load_codec(self.codec_spec)
        if not isinstance(codec, AudiotokCodec):
            raise ValueError(
                f"codec {self.codec_spec!r} is not an audiotok codec; the probes read its latents"
            )
        return codec

    @cached_property
    def lm_path(self) -> Path:
        from tokenlm.cli import DEFAULT_LM

        return DEFAULT_LM if self.lm_spec == "default" else Path(self.lm_spec)

    @cached_property
    def lm(self):
        from tokenlm.model import TokenLM

        return TokenLM.from_pretrained(self.lm_path).eval()

    @cached_property
    def alm(self):
        from multimodal.api import AudioLanguageModel

        return AudioLanguageModel.from_pretrained(self.alm_path)

    def has_alm(self) -> bool:
        return (self.alm_path / "config.json").is_file()

    def lm_layers(self) -> int:
        return json.loads((self.lm_path / "config.json").read_text())["audiotok"]["lm"]["num_layers"]

    def fingerprint(self, feature: str) -> str:
        """What a cached feature file depends on: a change here recomputes it."""
        if feature == "logmel":
            return LOGMEL_VERSION
        codec = self.codec.codec_id
        if feature.startswith("codec-"):
            return codec
        if feature.startswith("lm-layer-"):
            return f"{codec}|lm:{_sha256_file(self.lm_path / 'model.safetensors')[:16]}"
        return f"{codec}|alm:{_sha256_file(self.alm_path / 'model.safetensors')[:16]}"


def expand_features(names: Sequence[str], models: Models) -> list[str]:
    """``lm`` -> ``lm-layer-0 .. lm-layer-L`` (L = the LM's layer count); unknown names raise ValueError."""
    out = []
    for name in names:
        if name == "lm":
            out += [f"lm-layer-{i}" for i in range(models.lm_layers() + 1)]
        elif name in BASE_FEATURES or name.startswith("lm-layer-"):
            out.append(name)
        else:
            raise ValueError(f"unknown feature {name!r}; choose from {', '.join(BASE_FEATURES)}")
    return list(dict.fromkeys(out))


def pool(frames: torch.Tensor) -> np.ndarray:
    """``[T, D]`` -> ``[2 D]``: mean and population std over time."""
    frames = frames.float()
    return torch.cat([frames.mean(0), frames.std(0, correction=0)]).numpy()


def logmel(wav: torch.Tensor) -> torch.Tensor:
    """``[S]`` at 16 kHz -> ``[T, 64]`` log-mel frames."""
    import torchaudio.functional as AF

    window = torch.hann_window(400)
    spec = torch.stft(wav, 400, 160, window=window, center=True, return_complex=True).abs().pow(2)
    fb = AF.melscale_fbanks(201, 0.0, SAMPLE_RATE / 2, 64, SAMPLE_RATE)  # (F, 64)
    return (spec.T @ fb + 1e-6).log()  # (T, 64)


@torch.inference_mode()
def clip_features(wav: torch.Tensor, names: Sequence[str], models: Models) -> dict[str, np.ndarray]:
    """One clip ``[S]`` at 16 kHz -> ``{feature: vector [2 D]}`` for the (expanded) ``names``."""
    from codec.nn.model import full_fp32

    out = {}
    if "logmel" in names:
        out["logmel"] = pool(logmel(wav))
    if not any(n != "logmel" for n in names):
        return out
    model = models.codec.model
    frames = torch.tensor([max(1, math.ceil(wav.shape[-1] / model.config.hop_length))])
    with full_fp32():
        latents = model.encode_latents(wav[None], frames)  # (1, T, D)
        codes = model.quantizer(latents, model.config.num_codebooks).codes  # (1, K, T)
    if "codec-latents" in names:
        out["codec-latents"] = pool(latents[0])
    if "codec-tokens" in names:
        out["codec-tokens"] = pool(model.quantizer.decode_codes(codes)[0])
    layers = sorted(int(n.rsplit("-", 1)[1]) for n in names if n.startswith("lm-layer-"))
    if layers:
        out.update(_lm_features(codes[0], layers, models.lm))
    if "alm" in names:
        encoder = models.alm.net.encoder
        states, mask = encoder.encode_codes([codes[0]])  # (1, P, D), (1, P)
        out["alm"] = pool(states[0][mask[0]])
    return out


def _lm_features(codes: torch.Tensor, layers: list[int], lm) -> dict[str, np.ndarray]:
    """codes ``[K, T]`` -> pooled LM states of the wanted layers (0 = embeddings)."""
    from tokenlm.data import item_cells

    cells = item_cells(lm.pattern, codes[: lm.config.num_codebooks], lm.config.codebook_size)
    x = lm.embed(cells.tokens[None], cells.books[None])  # (1, L, D); position 0 is BOS
    out = {}
    for i in range(max(layers) + 1):
        if i > 0:
            x = lm.run_layers(x, i - 1, i)
        if i in layers:
            out[f"lm-layer-{i}"] = pool(x[0, 1:])
    return out


def features(name: str, clips: Sequence[Clip], models: Models | None = None) -> np.ndarray:
    """The feature ``name`` (one of `BASE_FEATURES` but ``lm``, or ``lm-layer-i``) of each clip ``[N, F]``."""
    return compute_features([name], clips, models or Models())[name]


def compute_features(
    names: Sequence[str],
    clips: Sequence[Clip],
    models: Models,
    progress: Callable[[str], None] | None = None,
) -> dict[str, np.ndarray]:
    """Several features of each clip, sharing the models' passes: ``{name: [N, F] float32}``."""
    rows: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for i, clip in enumerate(clips):
        got = clip_features(clip.load(), names, models)
        for n in names:
            rows[n].append(got[n])
        if progress and (i + 1) % 500 == 0:
            progress(f"  features: {i + 1}/{len(clips)} clips")
    return {n: np.stack(r).astype(np.float32) for n, r in rows.items()}


def cached_features(
    names: Sequence[str],
    clips: Sequence[Clip],
    split: str,
    folder: Path,
    models: Models,
    progress: Callable[[str], None] | None = None,
) -> dict[str, np.ndarray]:
    """`compute_features` with a cache: ``folder/{feature}.{split}.npy`` and ``folder/{split}.json`` (the
    clip keys in row order and each file's fingerprint). A file is reused only for the same clips and
    the same fingerprint; the rest are computed together and written."""
    folder.mkdir(parents=True, exist_ok=True)
    index_path = folder / f"{split}.json"
    keys = [c.key for c in clips]
    index = json.loads(index_path.read_text()) if index_path.is_file() else {}
    if index.get("clips") != keys:
        index = {"clips": keys, "fingerprints": {}}
    out, missing = {}, []
    for name in names:
        path = folder / f"{name}.{split}.npy"
        if index["fingerprints"].get(name) == models.fingerprint(name) and path.is_file():
            out[name] = np.load(path, allow_pickle=False)
        else:
            missing.append(name)
    if missing:
        if progress:
            progress(f"{split}: computing {', '.join(missing)} for {len(clips)} clips")
        for name, array in compute_features(missing, clips, models, progress).items():
            np.save(folder / f"{name}.{split}.npy", array, allow_pickle=False)
            index["fingerprints"][name] = models.fingerprint(name)
            out[name] = array
        index_path.write_text(json.dumps(index) + "\n")
    return out
