"""Would mixing an adaptive count model into the LM's probabilities save bits? An estimate, not a coder.

    python bench/tokenlm_mixture.py [--lm default] [--stores data/tokens/test-speech,...] [--limit 40]

The range coder of `tokenlm.compress` codes each code with the LM's probability. A PPM-style coder would
code it instead with ``(1 - lam) * p_lm + lam * p_count``, where ``p_count`` is a per-file, per-codebook
count model of the codes already coded (``(c[x] + a) / (n + a N)``, counts decayed by ``decay`` each code),
which both sides can keep exactly. This bench measures, teacher-forced on the same items as
bench/tokenlm_compress.py, how many bits such a mixture would save, for a grid of ``lam`` and ``decay``.
The best grid cell is picked on the items it is scored on, so it is an upper bound for a fixed mixture.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import update_section  # noqa: E402
from bench.tokenlm_compress import DEFAULT_STORES  # noqa: E402
from eval.lm_eval import _windows  # noqa: E402
from tokenlm.cli import load_lm  # noqa: E402
from tokenlm.data import item_cells  # noqa: E402
from tokenlm.model import IGNORE  # noqa: E402

LAMBDAS = (0.05, 0.1, 0.2, 0.4)
DECAYS = (1.0, 0.98, 0.95)
PRIOR = 0.02  # pseudo-count of every code


def count_probs(codes: np.ndarray, size: int, decay: float) -> np.ndarray:
    """The adaptive count model's probability of each code, from the codes before it."""
    counts, total, out = np.zeros(size), 0.0, np.empty(len(codes))
    for i, x in enumerate(codes):
        out[i] = (counts[x] + PRIOR) / (total + PRIOR * size)
        counts *= decay
        total = total * decay + 1
        counts[x] += 1
    return out


@torch.no_grad()
def store_bits(lm, store: Path, limit: int) -> tuple[int, float, dict]:
    """Codes scored, the LM's bits, and the mixture's bits per (lam, decay)."""
    N = lm.config.codebook_size
    lm_bits, mixed, n = 0.0, {(a, d): 0.0 for a in LAMBDAS for d in DECAYS}, 0
    for codes, _ in _windows(lm, store, limit):
        cells = item_cells(lm.pattern, codes, N)
        logits = lm(
            cells.tokens[None], cells.books[None], cells.target_books[None], targets=cells.targets[None]
        )
        probs = logits[0].double().softmax(-1)  # (Q, L, N)
        valid = cells.targets != IGNORE
        for q in range(probs.shape[0]):  # each stream in coding order (one codebook per stream here)
            at = valid[q].nonzero().flatten()
            targets = cells.targets[q, at]
            p_lm, codes_q = probs[q, at, targets].numpy(), targets.numpy()
            books = cells.target_books[q, at].numpy()
            lm_bits += float(-np.log2(p_lm).sum())
            n += len(at)
            for d in DECAYS:
                p_count = np.empty(len(at))
                for k in np.unique(books):  # one count model per codebook
                    sel = books == k
                    p_count[sel] = count_probs(codes_q[sel], N, d)
                for a in LAMBDAS:
                    mixed[(a, d)] += float(-np.log2((1 - a) * p_lm + a * p_count).sum())
    return n, lm_bits, mixed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lm", default="default", help="token LM: 'default' or an export folder")
    parser.add_argument("--stores", default=DEFAULT_STORES, help="comma-separated token stores")
    parser.add_argument("--limit", type=int, default=40, help="items per store (the first, by id)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lm = load_lm(args.lm)
    raw = np.log2(lm.config.codebook_size)
    head = " | ".join(f"lam {a}, decay {d}" for a in LAMBDAS for d in DECAYS)
    rows = [f"| store | codes | LM bits/code | LM fewer bits than raw | {head} | best: fewer bits than raw |",
            "|---|---:|---:|---:|" + "---:|" * (len(LAMBDAS) * len(DECAYS) + 1)]  # fmt: skip
    for store in args.stores.split(","):
        n, lm_bits, mixed = store_bits(lm, Path(store), args.limit)
        cells = [100 * (1 - mixed[(a, d)] / lm_bits) for a in LAMBDAS for d in DECAYS]
        best = min(mixed.values()) / n
        rows.append(f"| `{Path(store).name}` | {n} | {lm_bits / n:.3f} | {100 * (1 - lm_bits / n / raw):.1f}% | "
                    + " | ".join(f"{c:+.2f}%" for c in cells) + f" | {100 * (1 - best / raw):.1f}% |")  # fmt: skip
    body = "\n".join([
        f"LM `{args.lm}` ({lm.config.pattern}, {lm.config.num_codebooks} codebooks), teacher-forced on the first "
        f"{args.limit} items of each store. Cells: bits saved by the mixture, relative to the LM alone (positive ="
        " fewer bits); the last column is the best cell's saving against the raw codes. The best cell is picked "
        "on the items it is scored on (an upper bound for a fixed mixture).", "", *rows,
    ])  # fmt: skip
    print(body)
    if not args.no_write:
        update_section("Token LM compression: mixing in an adaptive count model", body)


if __name__ == "__main__":
    main()
