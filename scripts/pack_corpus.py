"""Pack a deterministic subset of the corpus as Ogg/Opus, small enough to travel to a remote GPU machine.

    python scripts/pack_corpus.py data/corpus .gpu/pack --megabytes 44 --bitrate 32

The remote machine cannot reach the network or build the corpus itself, and what travels there is
capped (64 MiB with the repository). Opus at 32 kbit/s is near-transparent for 16 kHz speech (about
40 dB SNR on a tone here) and 8x smaller than 16-bit PCM. The pack is itself a corpus: its
``manifest.jsonl`` has the source rows (licence, text, split) with ``path`` pointing at the .opus files,
plus ``packed_from`` (the original path) and ``packed_bitrate_kbps``, so ``codec.train`` reads it
unchanged (libsndfile decodes Opus at the 16 kHz recorded in its header, sample-aligned).

Selection: clips of each kind in a seeded random order until the kind's share of the budget is spent;
clips with more than ``--max-clipped`` of their samples at full scale are left out (the corpus rows
carry ``clipped``), and so are the clips of the packs named by ``--exclude``: a second pack
(``--exclude FIRST --valid-clips 0``) adds new hours to the first, each carried in its own call. Valid
clips are packed too (``--valid-clips`` per kind) so training can report its validation mel distance.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def select(
    rows: list[dict],
    budget_s: dict[str, float],
    valid_clips: int,
    max_clipped: float,
    seed: int,
    exclude: frozenset[str] = frozenset(),
) -> list[dict]:
    """Train clips of each kind in a seeded order until its budget is spent (none whose path is in
    ``exclude``), then ``valid_clips`` valid clips per kind."""
    rng = np.random.default_rng(seed)
    chosen = []
    for kind, budget in budget_s.items():
        pool = [
            r
            for r in rows
            if r["split"] == "train"
            and r["kind"] == kind
            and r.get("clipped", 0) <= max_clipped
            and r["path"] not in exclude
        ]
        used = 0.0
        for i in rng.permutation(len(pool)):
            if used >= budget:
                break
            chosen.append(pool[i])
            used += pool[i]["seconds"]
        valid = [r for r in rows if r["split"] == "valid" and r["kind"] == kind]
        chosen += [valid[i] for i in rng.permutation(len(valid))[:valid_clips]]
    return chosen


def encode(src: Path, dst: Path, bitrate: int) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["opusenc", "--quiet", "--bitrate", str(bitrate), "--comp", "10", str(src), str(dst)],
        check=True,
        stderr=subprocess.PIPE,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path, help="a corpus from `audiotok data build`")
    parser.add_argument("out", type=Path, help="output folder (replaced)")
    parser.add_argument("--megabytes", type=float, default=44.0, help="approximate size of the pack")
    parser.add_argument("--bitrate", type=int, default=32, help="Opus bitrate, kbit/s")
    parser.add_argument(
        "--shares", default="speech=0.6,music=0.25,sfx=0.15", help="share of the budget per kind"
    )
    parser.add_argument("--valid-clips", type=int, default=20, help="valid clips packed per kind")
    parser.add_argument(
        "--max-clipped", type=float, default=1e-3, help="leave out clips clipped more than this"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--exclude",
        type=Path,
        action="append",
        default=[],
        help="an earlier pack whose clips this one leaves out (repeatable): packs that add up, "
        "carried to the GPU machine in separate calls",
    )
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    if shutil.which("opusenc") is None:
        raise SystemExit("opusenc not found: run scripts/install_system_deps.sh (Debian package opus-tools)")

    rows = [json.loads(line) for line in (args.corpus / "manifest.jsonl").read_text().splitlines() if line]
    total_s = args.megabytes * 1e6 * 8 / (args.bitrate * 1000)
    shares = {k: float(v) for k, v in (item.split("=") for item in args.shares.split(","))}
    budget = {k: total_s * v / sum(shares.values()) for k, v in shares.items()}
    exclude = frozenset(
        json.loads(line)["packed_from"]
        for pack in args.exclude
        for line in (pack / "manifest.jsonl").read_text().splitlines()
        if line
    )
    chosen = select(rows, budget, args.valid_clips, args.max_clipped, args.seed, exclude)

    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    packed = []
    for r in chosen:
        rel = str(Path(r["path"]).with_suffix(".opus"))
        packed.append({**r, "path": rel, "packed_from": r["path"], "packed_bitrate_kbps": args.bitrate})
    with ThreadPoolExecutor(args.jobs) as pool:
        list(
            pool.map(
                lambda p: encode(args.corpus / p["packed_from"], args.out / p["path"], args.bitrate), packed
            )
        )
    with open(args.out / "manifest.jsonl", "w") as f:
        for p in packed:
            f.write(json.dumps(p) + "\n")
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    hours = {
        k: round(sum(p["seconds"] for p in packed if p["kind"] == k and p["split"] == "train") / 3600, 2)
        for k in shares
    }
    print(f"packed {len(packed)} clips ({hours} train hours) into {args.out}: {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
