"""Training and evaluation data of the audio-language model: the paired set's manifests, its token stores,
and a cache of the frozen encoder's states.

Layout of a paired set (``audiotok data build-alm --out data/alm``, then ``make data-alm`` tokenizes it)::

    data/alm/<split>.jsonl                 rows: id, path, captions [{text, template, heldout}], qa [...]
    data/alm/tokens/<split>/               the default codec's token store of the split's audio
    data/alm/features/<lm>/<split>.safetensors   cache: trunk and pooled states per clip (built on first use)

The cache is keyed by the token LM's weights hash, so another encoder never reads stale states. Batches
are a pure function of ``(seed, step)``: resuming needs only the step.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from codec.store import StoreError, TokenStore
from codec.vocab import Vocabulary
from multimodal.encoder import MAX_STATES, POOL, WINDOW_FRAMES, AudioEncoder, pad_rows, states_of

CACHE_FORMAT = "audiotok-alm-features/1"


class ALMDataError(ValueError):
    """The paired set cannot be used as given; the message says what to run."""


def read_manifest(root: str | Path, split: str) -> list[dict]:
    path = Path(root) / f"{split}.jsonl"
    if not path.is_file():
        raise ALMDataError(f"{path}: no such manifest; build the paired set with `make data-alm`")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        raise ALMDataError(f"{path}: the manifest is empty")
    return rows


def lm_key(encoder: AudioEncoder) -> str:
    """A short hash of the token LM's weights, and the layers, pooling and cap read (names the feature cache:
    the cached pooled states depend on all of them). The default settings keep the plain hash."""
    h = hashlib.sha256()
    for name, tensor in sorted(encoder.lm.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().numpy().tobytes())
    key = h.hexdigest()[:12]
    if encoder.layers != (encoder.num_layers,):  # states of several layers: a cache of their own
        key += "-layers" + "-".join(map(str, encoder.layers))
    if encoder.quantizer is not None:  # the codec's latents beside the LM's states
        key += "-latents"
    if encoder.pool != POOL:
        key += f"-pool{encoder.pool}"
    if encoder.max_states != MAX_STATES:
        key += f"-max{encoder.max_states}"
    return key


def store_codes(root: Path, split: str, rows: list[dict]) -> list[torch.Tensor]:
    """Each row's codes ``[K, T]`` from ``root/tokens/<split>`` (items named by their audio file's stem)."""
    path = root / "tokens" / split
    try:
        store = TokenStore.open(path, mode="r")
    except StoreError as e:
        raise ALMDataError(f"{path}: no token store ({e}); run `make data-alm`") from None
    by_sha = {store.row(i)["sha256"]: i for i in store.ids()}
    items = []
    for r in rows:  # by content: tokenize stores a repeated file once, and a rebuilt set reuses the ids
        item = by_sha.get(_file_sha256(root / r["path"]))
        if item is None:
            raise ALMDataError(
                f"{path} lacks clip {r['id']} of {split}.jsonl as it is now (a rebuilt clip's old codes do not "
                "count); re-run `make data-alm` to tokenize it"
            )
        items.append(item)
    codes = [torch.from_numpy(np.asarray(store.read(i), dtype=np.int64)) for i in items]
    store.close()
    return codes


def _file_sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def build_features(
    encoder: AudioEncoder, codes: list[torch.Tensor], batch: int = 16
) -> dict[str, torch.Tensor]:
    """Trunk states (clips of one window) and the frozen top's pooled states of every clip, concatenated
    with offsets (fp16)."""
    trunk, pooled = [None] * len(codes), [None] * len(codes)
    order = sorted(range(len(codes)), key=lambda i: codes[i].shape[1])  # similar lengths batch together
    for s in range(0, len(order), batch):
        idx = order[s : s + batch]
        with torch.no_grad():
            states, mask = encoder.encode_codes([codes[i] for i in idx])
            single = [i for i in idx if codes[i].shape[1] <= WINDOW_FRAMES]
            trunks = (
                encoder.trunk([codes[i][: encoder.lm.config.num_codebooks] for i in single]) if single else []
            )
        for j, i in enumerate(idx):
            pooled[i] = states[j][mask[j]].half()
        for i, t in zip(single, trunks):
            trunk[i] = t.half()
    D = encoder.dim
    empty = torch.zeros(0, D, dtype=torch.float16)
    trunk_rows = [t if t is not None else empty for t in trunk]
    return {
        "trunk": torch.cat(trunk_rows),
        "trunk_offsets": torch.tensor(np.cumsum([0] + [len(t) for t in trunk_rows]), dtype=torch.int64),
        "pooled": torch.cat(pooled),
        "pooled_offsets": torch.tensor(np.cumsum([0] + [len(p) for p in pooled]), dtype=torch.int64),
    }


@dataclass
class QAItem:
    row: int
    question: str
    answer: str
    type: str
    template: str
    heldout: bool


class ALMData:
    """One split of a paired set, with its encoder states (see the module docstring)."""

    def __init__(self, root: str | Path, split: str, vocab: Vocabulary, encoder: AudioEncoder,
                 caption_prob: float = 0.3, quiet: bool = True, type_temperature: float = 1.0):  # fmt: skip
        from safetensors.torch import load_file, save_file

        self.root, self.split, self.vocab, self.encoder = Path(root), split, vocab, encoder
        self.caption_prob = caption_prob
        if type_temperature <= 0:
            raise ValueError(f"type_temperature must be > 0, got {type_temperature}")
        self.type_temperature = type_temperature
        self.rows = read_manifest(self.root, split)
        cache = self.root / "features" / lm_key(encoder) / f"{split}.safetensors"
        # the rows themselves, not just their ids: a rebuilt set reuses the ids for other audio
        ids = hashlib.sha256("\n".join(json.dumps(r, sort_keys=True) for r in self.rows).encode()).hexdigest()
        if cache.is_file() and json.loads(cache.with_suffix(".json").read_text()).get("ids") == ids:
            feats = load_file(str(cache))
        else:
            if not quiet:
                print(f"caching encoder states of {len(self.rows)} {split} clips in {cache}", flush=True)
            feats = build_features(encoder, store_codes(self.root, split, self.rows))
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".tmp")
            save_file(feats, str(tmp))
            tmp.replace(cache)
            cache.with_suffix(".json").write_text(json.dumps({"format": CACHE_FORMAT, "ids": ids}) + "\n")
        self.feats = feats
        self.trunk_ok = [
            int(feats["trunk_offsets"][i + 1]) > int(feats["trunk_offsets"][i]) for i in range(len(self.rows))
        ]
        self.train_rows = [i for i in range(len(self.rows)) if self.trunk_ok[i] or encoder.mode == "frozen"]
        self.qa = [
            QAItem(i, q["question"], q["answer"], q["type"], q.get("template", ""), bool(q.get("heldout")))
            for i, r in enumerate(self.rows)
            for q in r.get("qa", [])
        ]

    @cached_property
    def _by_type(self) -> tuple[list[str], np.ndarray, dict[str, list[tuple[int, int]]]]:
        """The training questions grouped by type, as ``(row, index in the row's qa)``, and each type's
        sampling probability: its count to the power ``1 / type_temperature``, normalized (computed when a
        batch first draws by type)."""
        groups: dict[str, list[tuple[int, int]]] = {}
        for i in self.train_rows:
            for j, q in enumerate(self.rows[i].get("qa", [])):
                groups.setdefault(q["type"], []).append((i, j))
        types = sorted(groups)
        weights = np.array([len(groups[t]) for t in types], dtype=np.float64) ** (1 / self.type_temperature)
        return types, weights / max(weights.sum(), 1e-12), groups

    def __len__(self) -> int:
        return len(self.rows)

    def _slice(self, name: str, i: int) -> torch.Tensor:
        o = self.feats[f"{name}_offsets"]
        return self.feats[name][int(o[i]) : int(o[i + 1])].float()

    def audio(self, rows: list[int]) -> dict[str, torch.Tensor]:
        """The given rows' encoder inputs for `AudioLanguageNet.states`: the cached pooled states when the
        encoder is frozen, else the cached trunk states (the trainable top runs in the forward)."""
        if self.encoder.mode == "frozen":
            states, mask = pad_rows([self._slice("pooled", i) for i in rows], as_mask=True)
            return {"states": states, "mask": mask}
        trunk, lengths = pad_rows([self._slice("trunk", i) for i in rows])
        return {"trunk": trunk, "lengths": lengths}

    def states(self, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Audio states ``[B, P, D]`` and mask of the given rows."""
        return states_of(self.encoder, self.audio(rows))

    def pieces(self, text: str) -> list[int]:
        return self.vocab.encode_text(text)

    def batch(self, batch_size: int, seed: int, step: int, rank: int = 0) -> dict:
        """Rows, question and answer pieces (an empty question asks for a caption), one caption per row
        for the contrastive loss and each row's question type (``caption`` for a caption): a pure function of
        the arguments."""
        rng = np.random.default_rng([seed, step, rank])
        draw = self._draw if self.type_temperature == 1.0 else self._draw_by_type
        picks = draw(batch_size, rng)  # (row, question or None for a caption, caption)
        return {
            "rows": [i for i, _, _ in picks],
            "questions": [self.pieces(q["question"]) if q else [] for _, q, _ in picks],
            "answers": [self.pieces(q["answer"] if q else caption) for _, q, caption in picks],
            "captions": [self.pieces(caption) for _, _, caption in picks],
            "types": [q["type"] if q else "caption" for _, q, _ in picks],
        }

    def _caption(self, i: int, rng: np.random.Generator) -> str:
        caps = self.rows[i].get("captions", [])
        return caps[int(rng.integers(len(caps)))]["text"] if caps else ""

    def _draw(self, batch_size: int, rng: np.random.Generator) -> list[tuple[int, dict | None, str]]:
        """The set's own mix: uniform clips, each with one of its questions or (``caption_prob``) a caption."""
        rows = [self.train_rows[int(i)] for i in rng.integers(len(self.train_rows), size=batch_size)]
        picks = []
        for i in rows:
            row = self.rows[i]
            qa = row.get("qa", [])
            caption = self._caption(i, rng)
            if not qa or (row.get("captions") and rng.random() < self.caption_prob):
                picks.append((i, None, caption))
            else:
                picks.append((i, qa[int(rng.integers(len(qa)))], caption))
        return picks

    def _draw_by_type(self, batch_size: int, rng: np.random.Generator) -> list[tuple[int, dict | None, str]]:
        """The question types drawn by `_by_type`'s probabilities (``caption_prob`` of the rows, or
        all when the set has no questions, are a caption of a uniformly drawn clip)."""
        types, probs, groups = self._by_type
        picks = []
        for _ in range(batch_size):
            if not types or rng.random() < self.caption_prob:
                i, q = self.train_rows[int(rng.integers(len(self.train_rows)))], None
            else:
                group = groups[types[int(rng.choice(len(types), p=probs))]]
                i, j = group[int(rng.integers(len(group)))]
                q = self.rows[i]["qa"][j]
            picks.append((i, q, self._caption(i, rng)))
        return picks
