"""Training data for token LMs: token stores read by memory map, random crops packed into full sequences.

- Items: every item of one or more `codec.store.TokenStore` folders made by the same codec. A fixed
  share of each store is held out for evaluation *by item id* (a hash of the store's name and the id:
  the same items whatever the run, and never a crop of a training item).
- Sharding: the training items, sorted, go to ranks round-robin (rank r of W takes items r, r + W, ...),
  so ranks never share an item.
- Batches are a pure function of (seed, step, rank): a resumed run reads exactly the batches of one that
  never stopped, and the data position to resume is the step itself.
- Packing: each row of ``seq_steps`` steps is filled with crops of random items (drawn in proportion to
  their length), each starting with a BOS step; positions restart at each item and the attention mask
  lets a step see only its own item (no attention across items, no padding but the row's tail).
- The first ``num_codebooks`` codebooks of the store are used (the LM's K, chosen at train time).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from codec.store import StoreError, TokenStore
from tokenlm.model import IGNORE
from tokenlm.patterns import Pattern


class DataError(ValueError):
    """A problem with the token stores given as training data; the message names the store."""


@dataclass
class Cells:
    """One item's cells (Q streams, S + 1 positions: BOS, then the pattern's S steps).

    tokens: input codes (``N`` empty, ``N + 1`` BOS); books: their codebooks (-1 for BOS and empty);
    targets: the code each position predicts (IGNORE where nothing); target_books: its codebook."""

    tokens: torch.Tensor
    books: torch.Tensor
    targets: torch.Tensor
    target_books: torch.Tensor

    @property
    def length(self) -> int:
        return self.tokens.shape[-1]


def item_cells(pattern: Pattern, codes: torch.Tensor, codebook_size: int) -> Cells:
    """codes ``[K, T]`` -> the item's `Cells` ``[Q, S + 1]``."""
    K, T = codes.shape
    N = codebook_size
    sequence = pattern.build(codes[None].long(), empty=N)[0]  # (Q, S)
    book = pattern.codebook_of(K, T)  # (Q, S)
    Q = sequence.shape[0]
    bos = torch.full((Q, 1), N + 1, dtype=torch.long)
    none = torch.full((Q, 1), -1, dtype=torch.long)
    tokens = torch.cat([bos, sequence], dim=1)
    books = torch.cat([none, book], dim=1)
    targets = torch.cat([torch.where(book >= 0, sequence, IGNORE), torch.full((Q, 1), IGNORE)], dim=1)
    target_books = torch.cat([book, none], dim=1)
    return Cells(tokens, books, targets, target_books)


def frames_fitting(pattern: Pattern, num_codebooks: int, steps: int) -> int:
    """The most frames whose cells (BOS included) fit in ``steps`` positions. A pattern's step count is
    affine in the frame count (K T, T + K - 1, T), so two of its lengths give the rest."""
    one = pattern.num_steps(num_codebooks, 1)
    per_frame = pattern.num_steps(num_codebooks, 2) - one
    return max(0, (steps - 1 - (one - per_frame)) // per_frame)


def heldout(store_name: str, item_id: str, permille: int) -> bool:
    digest = hashlib.sha256(f"{store_name}\0{item_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little") % 1000 < permille


@dataclass(frozen=True)
class Item:
    store: int
    id: str
    frames: int


class TokenData:
    """Packed batches and held-out items from token stores (see the module docstring)."""

    def __init__(
        self,
        paths: list[str | Path],
        pattern: Pattern,
        num_codebooks: int,
        codebook_size: int,
        holdout_permille: int = 20,
        min_frames: int = 2,
    ):
        if not paths:
            raise DataError("no token store given; pass --data STORE (made by `audiotok tokenize`)")
        self.pattern, self.K, self.N, self.min_frames = pattern, num_codebooks, codebook_size, min_frames
        self.stores: list[TokenStore] = []
        for path in paths:
            try:
                store = TokenStore.open(path, mode="r")
            except StoreError as e:
                raise DataError(
                    f"{path}: not a token store ({e}); make one with `audiotok tokenize`"
                ) from None
            self.stores.append(store)
        first = self.stores[0].meta
        for path, store in zip(paths, self.stores):
            meta = store.meta
            if meta.codec_id != first.codec_id:
                raise DataError(
                    f"{path} was made with codec {meta.codec_id}, {paths[0]} with {first.codec_id}: one LM "
                    "trains on one codec's tokens; tokenize both with the same --codec"
                )
            if meta.num_codebooks < num_codebooks or meta.codebook_size != codebook_size:
                raise DataError(
                    f"{path} holds {meta.num_codebooks} codebooks of {meta.codebook_size}; the LM needs at "
                    f"least {num_codebooks} of {codebook_size}"
                )
        self.codec_id, self.frame_rate, self.codec_spec = first.codec_id, float(first.frame_rate), first.codec
        self.train_items: list[Item] = []
        self.heldout_items: list[Item] = []
        self.too_short = 0
        for s, (path, store) in enumerate(zip(paths, self.stores)):
            name = Path(path).resolve().name
            for row in store.rows():
                item = Item(s, row["id"], int(row["frames"]))
                if item.frames < min_frames:
                    self.too_short += 1
                    continue
                (self.heldout_items if heldout(name, item.id, holdout_permille) else self.train_items).append(
                    item
                )
        if not self.train_items:
            raise DataError(
                f"{', '.join(map(str, paths))}: no training items ({sum(len(s) for s in self.stores)} items, "
                f"{self.too_short} shorter than {min_frames} frames, {len(self.heldout_items)} held out)"
            )
        self.train_items.sort(key=lambda i: (i.store, i.id))
        self.heldout_items.sort(key=lambda i: (i.store, i.id))

    def codes(self, item: Item, start: int = 0, frames: int | None = None) -> torch.Tensor:
        """The item's first K codebooks, frames ``start .. start + frames`` -> ``[K, F]`` int64."""
        array = self.stores[item.store].read(item.id)  # memory-mapped (K_store, T)
        stop = item.frames if frames is None else start + frames
        return torch.from_numpy(np.asarray(array[: self.K, start:stop], dtype=np.int64))

    def shard(self, rank: int, world: int) -> list[Item]:
        return self.train_items[rank::world]

    def batch(
        self, batch_size: int, seq_steps: int, seed: int, step: int, rank: int = 0, world: int = 1
    ) -> dict:
        """Packed rows ``[B, Q, seq_steps]`` (tokens, books, targets, target_books) plus position_ids and
        doc ``[B, seq_steps]`` (-1 on the padded tail): a pure function of the arguments."""
        items = self.shard(rank, world)
        if not items:
            raise DataError(f"rank {rank} of {world} has no training items ({len(self.train_items)} in all)")
        weights = np.array([i.frames for i in items], dtype=np.float64)
        weights /= weights.sum()
        rng = np.random.default_rng([seed, step, rank])
        rows = [self._row(items, weights, seq_steps, rng) for _ in range(batch_size)]
        return {key: torch.stack([r[key] for r in rows]) for key in rows[0]}

    def _row(self, items: list[Item], weights: np.ndarray, seq_steps: int, rng: np.random.Generator) -> dict:
        Q = self.pattern.num_streams(self.K)
        parts, used, doc = [], 0, 0
        while True:
            room = seq_steps - used
            fit = frames_fitting(self.pattern, self.K, room)
            if fit < min(4, self.min_frames * 2) or (parts and fit < 4):
                break  # the tail is too short for a useful crop: pad it
            item = items[int(rng.choice(len(items), p=weights))]
            frames = min(item.frames, fit)
            start = int(rng.integers(0, item.frames - frames + 1))
            cells = item_cells(self.pattern, self.codes(item, start, frames), self.N)
            parts.append((cells, doc))
            used += cells.length
            doc += 1
        pad = seq_steps - used
        out = {
            "tokens": [c.tokens for c, _ in parts] + [torch.full((Q, pad), self.N)],
            "books": [c.books for c, _ in parts] + [torch.full((Q, pad), -1)],
            "targets": [c.targets for c, _ in parts] + [torch.full((Q, pad), IGNORE)],
            "target_books": [c.target_books for c, _ in parts] + [torch.full((Q, pad), -1)],
        }
        out = {k: torch.cat(v, dim=1) for k, v in out.items()}
        out["position_ids"] = torch.cat([torch.arange(c.length) for c, _ in parts] + [torch.arange(pad)])
        out["doc"] = torch.cat([torch.full((c.length,), d) for c, d in parts] + [torch.full((pad,), -1)])
        return out

    def heldout_windows(self, seq_steps: int, max_items: int | None = None) -> list[tuple[Item, int, int]]:
        """Every held-out item cut into consecutive windows that fit ``seq_steps``: (item, start, frames)."""
        fit = frames_fitting(self.pattern, self.K, seq_steps)
        items = self.heldout_items if max_items is None else self.heldout_items[:max_items]
        return [(item, s, min(fit, item.frames - s)) for item in items for s in range(0, item.frames, fit)]

    def seconds(self, frames: int) -> float:
        return frames / self.frame_rate

    def raw_bits_per_second(self) -> float:
        return self.K * math.log2(self.N) * self.frame_rate

    def close(self) -> None:
        for store in self.stores:
            store.close()


def attention_mask(doc: torch.Tensor, causal: bool = True) -> torch.Tensor:
    """doc ``[B, L]`` -> ``[B, 1, L, L]`` bool: only within one packed item, and causal unless told not."""
    same = doc[:, :, None] == doc[:, None, :]
    if causal:
        same = same & torch.ones(same.shape[-1], same.shape[-1], dtype=torch.bool, device=doc.device).tril()
    return same[:, None]
