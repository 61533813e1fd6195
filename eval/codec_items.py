"""Which reference items a codec evaluation scores: rows of a corpus manifest (by split, kind, source and
language) or the audio files of a folder, at most ``limit`` per kind, evenly spaced (deterministic).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from eval.metrics import KINDS


def collect_items(
    ref: str | os.PathLike,
    kind: str = "auto",
    split: str | None = "test",
    limit: int | None = None,
    sources: list[str] | None = None,
    languages: list[str] | None = None,
) -> list[tuple[Path, str]]:
    """Reference items from a corpus (a folder with manifest.jsonl, or the manifest itself) or a folder of audio.

    Manifest rows are ``{"path", "kind", "split", ...}`` with paths relative to the manifest's folder;
    rows of another ``split`` are left out (``split=None`` keeps all), and ``kind`` other than "auto" keeps
    only rows of that kind; ``sources`` keeps only rows whose ``source`` (the package) is one of them, e.g. the
    recorded music of ``0ad-data`` apart from the rendered MIDI; ``languages`` keeps only rows whose
    ``language`` is one of them or a variant of one ("en" keeps "en", "en-us" and "en_GB"). In a plain folder, ``kind`` gives every file's kind; "auto" takes it from a
    folder named speech, music or sfx on the file's path and otherwise assumes speech.
    limit: at most this many items per kind, evenly spaced through the sorted list (deterministic).
    """
    from codec.pipeline.inputs import iter_audio_files

    if kind != "auto" and kind not in KINDS:
        raise ValueError(f"kind must be 'auto' or one of {KINDS}, got {kind!r}")
    ref = Path(ref)
    manifest = ref / "manifest.jsonl" if ref.is_dir() else ref
    items: list[tuple[Path, str]] = []
    if manifest.is_file() and manifest.suffix == ".jsonl":
        for line_no, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                row_path, row_kind, row_split = row["path"], row["kind"], row.get("split")
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ValueError(
                    f"{manifest}:{line_no}: not a manifest row with path and kind ({e}); "
                    "rebuild the corpus with `audiotok data build`."
                ) from None
            if split is not None and row_split != split:
                continue
            if kind != "auto" and row_kind != kind:
                continue
            if sources is not None and row.get("source") not in sources:
                continue
            if languages is not None and not _language_matches(row.get("language"), languages):
                continue
            if row_kind not in KINDS:
                raise ValueError(f"{manifest}:{line_no}: kind {row_kind!r} is not one of {KINDS}.")
            items.append((manifest.parent / row_path, row_kind))
        if not items:
            raise ValueError(
                f"{manifest}: no rows with split {split!r}"
                + (f" and kind {kind!r}" if kind != "auto" else "")
                + (f" and source in {sources}" if sources is not None else "")
                + (f" and language in {languages}" if languages is not None else "")
                + "; check --split / --kind / --source / --language."
            )
    elif sources is not None or languages is not None:
        raise ValueError(
            f"{ref}: a source or language filter needs a corpus manifest (its rows name their source and "
            "language)."
        )
    elif ref.is_dir():
        for path in iter_audio_files([str(ref)]):
            if kind != "auto":
                items.append((path, kind))
                continue
            parts = set(path.relative_to(ref).parts[:-1])
            found = [k for k in KINDS if k in parts]
            items.append((path, found[0] if found else "speech"))
    else:
        raise ValueError(f"{ref}: is neither a folder of audio nor a manifest.jsonl; pass one of those.")
    items.sort(key=lambda it: str(it[0]))
    if limit is not None:
        items = _limit_per_kind(items, limit)
    return items


def _language_matches(language: str | None, wanted: list[str]) -> bool:
    """ "en" matches "en", "en-us" and "en_GB" (case-insensitive), not "eng" or "ena"."""
    if not language:
        return False
    language = language.lower()
    for w in (w.lower() for w in wanted):
        if language == w or (language.startswith(w) and language[len(w)] in "-_"):
            return True
    return False


def _limit_per_kind(items: list[tuple[Path, str]], limit: int) -> list[tuple[Path, str]]:
    out = []
    for kind in KINDS:
        group = [it for it in items if it[1] == kind]
        if len(group) > limit:
            step = len(group) / limit
            group = [group[int(i * step)] for i in range(limit)]
        out += group
    return out
