"""``audiotok eval lm``: how well a token LM predicts the codes of held-out token stores.

    audiotok eval lm data/tokens/test-speech data/tokens/test-music [--lm default] [--limit 40] [--out lm.json]

A causal LM is scored by teacher forcing: bits per code of each codebook and bits per second of audio
against the raw codes (``log2(codebook_size)`` bits each), which is what `audiotok lm compress` reaches
within a few bytes a file. A masked LM cannot score a sequence that way; it is scored on what it was trained
to do: frames hidden in spans (the trainer's masking, with fixed seeds), their codes predicted with
bidirectional attention: masked loss (nats per code) and accuracy. The items are each store's first
``limit`` ids in sorted order, windows of the LM's context, so two runs score the same codes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from codec.store import TokenStore

FORMAT = "audiotok-eval-lm/1"


class LMEvalError(ValueError):
    """A store this LM cannot score (another codec, too few codebooks, empty)."""


def _windows(lm: Any, store: Path, limit: int):
    """``(codes [K, T'], item_id)`` windows of the store's first ``limit`` items, each fitting the context."""
    from tokenlm.data import frames_fitting

    K = lm.config.num_codebooks
    with TokenStore.open(store) as src:
        meta = src.meta
        if lm.meta.get("codec_id") and meta.codec_id != lm.meta["codec_id"]:
            raise LMEvalError(f"{store} holds tokens of codec {meta.codec_id}, but the LM models "
                              f"{lm.meta['codec_id']}'s: tokenize with the LM's codec")  # fmt: skip
        if meta.num_codebooks < K:
            raise LMEvalError(f"{store} has {meta.num_codebooks} codebooks; the LM needs {K}")
        ids = sorted(src.ids())[:limit]
        if not ids:
            raise LMEvalError(f"{store} holds no items")
        fit = frames_fitting(lm.pattern, K, lm.config.max_steps)
        for item_id in ids:
            codes = torch.from_numpy(src.read(item_id)[:K].astype("int64"))
            for start in range(0, codes.shape[1], fit):
                yield codes[:, start : start + fit], item_id


@torch.no_grad()
def causal_scores(lm: Any, store: Path, limit: int) -> dict:
    """Teacher-forced bits per code of each codebook, and bits per second of audio."""
    from tokenlm.data import item_cells
    from tokenlm.model import IGNORE

    K, N = lm.config.num_codebooks, lm.config.codebook_size
    total, count = torch.zeros(K, dtype=torch.float64), torch.zeros(K, dtype=torch.float64)
    frames, items = 0, set()
    for codes, item_id in _windows(lm, store, limit):
        cells = item_cells(lm.pattern, codes, N)
        logits = lm(
            cells.tokens[None], cells.books[None], cells.target_books[None], targets=cells.targets[None]
        )
        nll = torch.nn.functional.cross_entropy(
            logits[0].permute(0, 2, 1), cells.targets.clamp(min=0), reduction="none"
        ).double()  # (Q, L)
        valid = cells.targets != IGNORE
        book = cells.target_books.clamp(min=0)
        total.index_add_(0, book[valid], nll[valid] / math.log(2.0))
        count.index_add_(0, book[valid], torch.ones(int(valid.sum()), dtype=torch.float64))
        frames += codes.shape[1]
        items.add(item_id)
    frame_rate = _frame_rate(store)
    seconds = frames / frame_rate
    raw = K * math.log2(N) * frame_rate
    coded = float(total.sum()) / seconds
    return {"items": len(items), "seconds": round(seconds, 2),
            "bits_per_code": [round(b, 4) for b in (total / count.clamp(min=1)).tolist()],
            "raw_bits_per_second": round(raw, 1), "bits_per_second": round(coded, 1),
            "saving": round(1 - coded / raw, 4)}  # fmt: skip


@torch.no_grad()
def masked_scores(lm: Any, store: Path, limit: int, seed: int = 0) -> dict:
    """Masked loss (nats per code) and accuracy on spans hidden with the trainer's masking."""
    from tokenlm.data import item_cells
    from tokenlm.masking import mask_frames
    from tokenlm.model import IGNORE

    N = lm.config.codebook_size
    nats, right, codes_seen, frames, items = 0.0, 0, 0, 0, set()
    for i, (codes, item_id) in enumerate(_windows(lm, store, limit)):
        cells = item_cells(lm.pattern, codes, N)
        batch = mask_frames({"tokens": cells.tokens[None], "books": cells.books[None]},
                            torch.Generator().manual_seed(seed * 1_000_003 + i), N)  # fmt: skip
        logits = lm(batch["tokens"], batch["books"], batch["target_books"])
        keep = batch["targets"] != IGNORE
        nats += float(
            torch.nn.functional.cross_entropy(logits[keep], batch["targets"][keep], reduction="sum")
        )
        right += int((logits[keep].argmax(-1) == batch["targets"][keep]).sum())
        codes_seen += int(keep.sum())
        frames += codes.shape[1]
        items.add(item_id)
    return {"items": len(items), "seconds": round(frames / _frame_rate(store), 2), "masked_codes": codes_seen,
            "masked_loss": round(nats / max(codes_seen, 1), 4),
            "masked_accuracy": round(right / max(codes_seen, 1), 4)}  # fmt: skip


def _frame_rate(store: Path) -> float:
    with TokenStore.open(store) as src:
        return float(src.meta.frame_rate)


def evaluate_lm(lm: Any, stores: list[str | Path], limit: int = 40, seed: int = 0, progress=None) -> dict:
    """Scores of each store under the LM (see the module doc), with the LM's description."""
    lm.eval()
    out: dict = {"format": FORMAT, "lm": {"pattern": lm.config.pattern, "objective": lm.config.objective,
                 "num_codebooks": lm.config.num_codebooks, "parameters": lm.num_parameters(),
                 "codec_id": lm.meta.get("codec_id")}, "limit": limit, "stores": {}}  # fmt: skip
    for store in stores:
        if progress:
            progress(f"scoring {store}")
        path = Path(store)
        if not (path / "meta.json").is_file():
            raise LMEvalError(f"{store} is not a token store (no meta.json); make one with audiotok tokenize")
        out["stores"][path.name] = (
            causal_scores(lm, path, limit) if lm.causal else masked_scores(lm, path, limit, seed)
        )
    return out


def to_markdown(report: dict) -> str:
    lm = report["lm"]
    head = (f"LM: {lm['pattern']} pattern, {lm['objective']} objective, {lm['num_codebooks']} codebooks, "
            f"{lm['parameters'] / 1e6:.1f}M parameters, codec {lm['codec_id']}")  # fmt: skip
    if lm["objective"] == "causal":
        rows = [
            "| store | items | seconds | raw bits/s | LM bits/s | fewer bits |",
            "|---|---|---|---|---|---|",
        ]
        rows += [f"| `{name}` | {s['items']} | {s['seconds']:.1f} | {s['raw_bits_per_second']:.0f} | "
                 f"{s['bits_per_second']:.0f} | {100 * s['saving']:.1f}% |" for name, s in report["stores"].items()]  # fmt: skip
    else:
        rows = ["| store | items | seconds | masked codes | masked loss (nats) | masked accuracy |",
                "|---|---|---|---|---|---|"]  # fmt: skip
        rows += [f"| `{name}` | {s['items']} | {s['seconds']:.1f} | {s['masked_codes']} | {s['masked_loss']:.3f} | "
                 f"{100 * s['masked_accuracy']:.1f}% |" for name, s in report["stores"].items()]  # fmt: skip
    return "\n".join([head, "", *rows])
