"""LM compression of held-out token stores: bits per second against the raw codes, per kind, in one run.

    python bench/tokenlm_compress.py [--lm default] [--baseline DIR] [--stores data/tokens/test-speech,...]
                                     [--limit 40]

Each store (by default the corpus test split, one store per kind, made by ``make lm-data``) is cut to its
first ``--limit`` items (sorted ids), compressed to an .lmz with the LM and decompressed again; the bench
fails unless every item comes back bit-exact. Raw bits are ``log2(codebook_size)`` per code (10 bits for
the default codec: 6 kbps at 12 codebooks); speeds are seconds of audio per wall second. ``--baseline``
scores a second LM on the same items, teacher-forced, beside the first LM's own teacher-forced figure (the
coder's bits add the file's header and a few bytes per item to it), so two LMs compare side by side in one
run.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import update_section  # noqa: E402
from codec.store import TokenStore, store_items_equal  # noqa: E402
from eval.lm_eval import causal_scores  # noqa: E402
from tokenlm.cli import load_lm  # noqa: E402
from tokenlm.compress import compress_store, decompress_file  # noqa: E402

DEFAULT_STORES = ",".join(str(ROOT / "data" / "tokens" / f"test-{k}") for k in ("speech", "music", "sfx"))


def subset(store: Path, limit: int, out: Path) -> Path:
    with TokenStore.open(store) as src, TokenStore.create(out, src.meta) as dst:
        for item_id in sorted(src.ids())[:limit]:
            row = src.row(item_id)
            keep = {
                k: row.get(k)
                for k in ("source", "relpath", "sha256", "seconds", "channel")
                if row.get(k) is not None
            }
            dst.append(item_id, src.read(item_id), **keep)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lm", default="default", help="token LM: 'default' or an export folder")
    parser.add_argument("--baseline", help="a second token LM, scored teacher-forced on the same items")
    parser.add_argument(
        "--stores", default=DEFAULT_STORES, help="comma-separated token stores (one per kind)"
    )
    parser.add_argument("--limit", type=int, default=40, help="items per store (the first, by id)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--title", default="Token LM compression", help="BENCHMARKS.md section title")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lm = load_lm(args.lm)
    base = load_lm(args.baseline) if args.baseline else None
    extra = " teacher-forced: LM | teacher-forced: baseline |" if base else ""
    rows = ["| store | items | seconds | raw bits/s | LM bits/s | fewer bits | encode ×RT | decode ×RT |" + extra,
            "|---|---|---|---|---|---|---|---|" + "---|---|" * bool(base)]  # fmt: skip
    total_raw = total_coded = 0
    per_book: list[list[float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, store in enumerate(args.stores.split(",")):
            part = subset(Path(store), args.limit, Path(tmp) / f"s{i}")
            start = time.perf_counter()
            stats = compress_store(lm, part, Path(tmp) / f"s{i}.lmz")
            encode = time.perf_counter() - start
            start = time.perf_counter()
            decompress_file(lm, Path(tmp) / f"s{i}.lmz", Path(tmp) / f"back{i}")
            decode = time.perf_counter() - start
            problems = store_items_equal(part, Path(tmp) / f"back{i}")
            if problems:
                raise SystemExit(f"{store}: the round trip is not exact: {problems[:3]}")
            d = stats.to_dict()
            total_raw, total_coded = total_raw + stats.raw_bits, total_coded + stats.coded_bits
            forced = causal_scores(lm, Path(store), args.limit)  # teacher-forced, `eval.lm_eval`
            vs = ""
            if base:
                theirs = causal_scores(base, Path(store), args.limit)["saving"]
                vs = f" {100 * forced['saving']:.1f}% | {100 * theirs:.1f}% |"
            rows.append(f"| `{Path(store).name}` | {stats.items} | {stats.seconds:.1f} | {d['raw_bits_per_second']:.0f} | "
                        f"{d['coded_bits_per_second']:.0f} | {100 * d['saving']:.1f}% | {stats.seconds / encode:.1f} | "
                        f"{stats.seconds / decode:.1f} |" + vs)  # fmt: skip
            per_book.append(forced["bits_per_code"])
            shutil.rmtree(part)
    params = lm.num_parameters() / 1e6
    body = "\n".join([
        f"LM `{args.lm}` ({lm.config.pattern}, {lm.config.num_codebooks} codebooks, {params:.1f}M parameters, "
        f"codec {lm.meta.get('codec_id')}); every item decompressed bit-exact. All stores: "
        f"{100 * (1 - total_coded / max(total_raw, 1)):.1f}% fewer bits than the raw codes."
        + (f" Baseline: `{args.baseline}`." if base else ""), "", *rows, "",
        "Bits per code of each codebook under the LM (teacher-forced forward pass, the same items; raw: "
        f"{math.log2(lm.config.codebook_size):.0f}):", "",
        "| store | " + " | ".join(f"k{k}" for k in range(lm.config.num_codebooks)) + " |",
        "|---|" + "---|" * lm.config.num_codebooks,
        *(f"| `{Path(st).name}` | " + " | ".join(f"{b:.2f}" for b in books) + " |"
          for st, books in zip(args.stores.split(","), per_book)),
    ])  # fmt: skip
    print(body)
    if not args.no_write:
        update_section(args.title, body)


if __name__ == "__main__":
    main()
