"""Write the corpus's split lists for ``audiotok tokenize @LIST``.

Reads ``DATA/manifest.jsonl`` and writes ``DATA/lists/{train,valid,test}.jsonl`` and
``DATA/lists/{split}-{kind}.jsonl``: one JSON line per clip, ``{"path": "../<kind>/...wav", "kind": ...}``,
the path relative to the lists folder (where `read_input_list` resolves it). A store's item ids are then
these paths, i.e. ``"../" + the manifest row's path``. Works on a partial (still running) build too.

The corpus splits by source recording, but some packages ship one recording under several names (Tux Paint
stamps above all), so the same audio can sit in two splits. A valid or test clip whose bytes equal a clip of
an earlier split (train, then valid) is left out of the lists, so that held-out token stores hold only
unseen audio (``--keep-leaks`` keeps them). A path listed twice in the manifest is listed once.

    python scripts/corpus_lists.py --data data/corpus
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

from codec.data.corpus import KINDS, SPLITS, read_manifest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data/corpus", help="corpus folder holding manifest.jsonl")
    p.add_argument("--out", default=None, help="folder for the lists (default: DATA/lists)")
    p.add_argument("--keep-leaks", action="store_true",
                   help="keep valid/test clips whose audio also appears in an earlier split")  # fmt: skip
    args = p.parse_args()
    data = Path(args.data)
    out = Path(args.out) if args.out else data / "lists"
    out.mkdir(parents=True, exist_ok=True)
    rel = Path(os.path.relpath(data, out))
    rows = {r["path"]: r for r in read_manifest(data)}.values()  # one row per path
    lists: dict[str, list[str]] = {}
    seen: set[str] = set()  # content hashes of the splits already listed
    for split in SPLITS:
        hashes, dropped = set(), 0
        for row in (r for r in rows if r["split"] == split):
            sha = hashlib.sha256((data / row["path"]).read_bytes()).hexdigest()
            if sha in seen and not args.keep_leaks:
                dropped += 1
                continue
            hashes.add(sha)
            line = json.dumps({"path": (rel / row["path"]).as_posix(), "kind": row["kind"]}) + "\n"
            lists.setdefault(split, []).append(line)
            lists.setdefault(f"{split}-{row['kind']}", []).append(line)
        seen |= hashes
        if dropped:
            print(f"{split}: left out {dropped} clips whose audio is in an earlier split")
    for name in [*SPLITS, *(f"{s}-{k}" for s in SPLITS for k in KINDS)]:
        lines = lists.get(name, [])
        tmp = out / f"{name}.jsonl.tmp"
        tmp.write_text("".join(lines), encoding="utf-8")
        os.replace(tmp, out / f"{name}.jsonl")
        print(f"{out / name}.jsonl: {len(lines)} clips")


if __name__ == "__main__":
    main()
