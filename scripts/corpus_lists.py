"""Write the corpus's split lists for ``audiotok tokenize @LIST``.

Reads ``DATA/manifest.jsonl`` and writes ``DATA/lists/{train,valid,test}.jsonl`` and
``DATA/lists/{split}-{kind}.jsonl``: one JSON line per clip, ``{"path": "../<kind>/...wav", "kind": ...}``,
the path relative to the lists folder (where `read_input_list` resolves it). A store's item ids are then
these paths, i.e. ``"../" + the manifest row's path``. Works on a partial (still running) build too.

    python scripts/corpus_lists.py --data data/corpus
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from codec.data.corpus import KINDS, SPLITS, read_manifest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data/corpus", help="corpus folder holding manifest.jsonl")
    p.add_argument("--out", default=None, help="folder for the lists (default: DATA/lists)")
    args = p.parse_args()
    data = Path(args.data)
    out = Path(args.out) if args.out else data / "lists"
    out.mkdir(parents=True, exist_ok=True)
    rel = Path(os.path.relpath(data, out))
    lists: dict[str, list[str]] = {}
    for row in read_manifest(data):
        line = json.dumps({"path": (rel / row["path"]).as_posix(), "kind": row["kind"]}) + "\n"
        lists.setdefault(row["split"], []).append(line)
        lists.setdefault(f"{row['split']}-{row['kind']}", []).append(line)
    for name in [*SPLITS, *(f"{s}-{k}" for s in SPLITS for k in KINDS)]:
        lines = lists.get(name, [])
        tmp = out / f"{name}.jsonl.tmp"
        tmp.write_text("".join(lines), encoding="utf-8")
        os.replace(tmp, out / f"{name}.jsonl")
        print(f"{out / name}.jsonl: {len(lines)} clips")


if __name__ == "__main__":
    main()
