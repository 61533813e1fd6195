"""What ``audiotok tokenize`` reads: audio files found from folders (recursively), globs and list files.

`scan_inputs` expands the command line's inputs into sorted, deduplicated `InputFile` rows, each with its
path relative to the folder or glob root it came from (the store keeps it, and ``audiotok decode`` writes
there); inputs that match nothing are reported, never dropped in silence.
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from codec.audio import AUDIO_EXTENSIONS, AudioNotFoundError, display_path


@dataclass
class InputFile:
    """One file found from the inputs; relpath is relative to the folder or glob root it came from."""

    path: Path
    relpath: str


@dataclass
class InputScan:
    """What the inputs expanded to: files (sorted, deduplicated) and inputs that matched nothing."""

    files: list[InputFile] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)


def _is_audio_name(name: str) -> bool:
    return name.lower().endswith(AUDIO_EXTENSIONS)


def _walk(root: Path) -> list[Path]:
    """Audio files under ``root``, following symlinks but visiting each real folder once (loop-safe).

    Entries with an audio extension are returned even when they are not audio files (dangling or looping
    symlinks, a folder named ``x.wav``), so that loading them reports the problem instead of silently
    dropping them; a folder named like an audio file is not searched.
    """
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
        except OSError:
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:
            continue
        seen.add(key)
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue  # unreadable folder: its files cannot be listed, let alone read
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError:
                is_dir = False
            if is_dir and not _is_audio_name(entry.name):
                stack.append(Path(entry.path))
            elif _is_audio_name(entry.name):  # a folder named x.wav too: loading it reports the mistake
                found.append(Path(entry.path))
    return found


def _glob_root(pattern: str) -> Path:
    """The folder part of a glob before its first wildcard (relpaths are taken from there)."""
    parts = Path(pattern).parts
    static = []
    for part in parts:
        if glob.has_magic(part):
            break
        static.append(part)
    return Path(*static) if static else Path(".")


class InputListError(ValueError):
    """A list file (``@list.txt`` / ``--from-list``) cannot be read or has a bad line; names the file and line."""


def read_input_list(path: str | os.PathLike) -> list[InputFile]:
    """Entries of a list file: one path per line, or JSON lines with a ``"path"`` field.

    Blank lines and lines starting with ``#`` are skipped. Relative paths are relative to the list file's
    folder; an entry's relpath (its item id) is the path as written, or relative to the list's folder
    for an absolute path under it. Folders and globs in a list are expanded later by `scan_inputs`.
    """

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as e:
        raise InputListError(
            f"{display_path(path)}: cannot read the list file ({e.strerror or e})."
        ) from None
    base = path.parent
    entries: list[InputFile] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("{"):
            try:
                row = json.loads(line)
            except ValueError:
                row = None
            if not isinstance(row, dict) or not isinstance(row.get("path"), str):
                raise InputListError(
                    f'{display_path(path)}: line {lineno} is not a JSON object with a "path" string; fix the line.'
                )
            line = row["path"]
        entry = Path(line)
        full = entry if entry.is_absolute() else base / entry
        if not entry.is_absolute():
            rel = Path(os.path.normpath(entry)).as_posix()
        elif full.is_relative_to(base):
            rel = full.relative_to(base).as_posix()
        else:
            rel = full.as_posix().lstrip("/")
        entries.append(InputFile(full, rel))
    return entries


def _expand(spec: str) -> list[InputFile]:
    """One input (file, folder or glob) -> the files it names, with relpaths."""
    path = Path(spec)
    if os.path.isdir(path):
        return [InputFile(p, p.relative_to(path).as_posix()) for p in _walk(path)]
    if os.path.lexists(path):
        return [InputFile(path, path.name)]
    if glob.has_magic(spec):
        root = _glob_root(spec)
        found = []
        for m in sorted(glob.glob(spec, recursive=True)):
            mp = Path(m)
            if os.path.isdir(mp) and not _is_audio_name(mp.name):
                found += [InputFile(p, p.relative_to(root).as_posix()) for p in _walk(mp)]
            else:
                found.append(InputFile(mp, mp.relative_to(root).as_posix()))
        return found
    return []


def _is_list_spec(spec: str) -> bool:
    """``@list.txt`` names a list file, unless a file literally named ``@list.txt`` exists."""
    return spec.startswith("@") and len(spec) > 1 and not os.path.lexists(spec)


def scan_inputs(inputs: list[str], lists: list[str] | tuple[str, ...] = ()) -> InputScan:
    """Expand files, folders (recursive, audio extensions only), globs and list files into sorted files.

    ``@FILE`` among ``inputs``, and each of ``lists``, is a list file (see `read_input_list`); its entries
    may be files, folders or globs too. A file named explicitly is kept whatever its extension (it is
    read by content). Duplicates (the same real file reached twice) are kept once. Inputs that match
    nothing go to ``unmatched``. Raises `InputListError` for an unreadable or malformed list file.
    """
    scan = InputScan()
    candidates: list[InputFile] = []
    list_files = [s[1:] for s in inputs if _is_list_spec(s)] + list(lists)
    for spec in [s for s in inputs if not _is_list_spec(s)]:
        found = _expand(spec)
        if not found:
            scan.unmatched.append(spec)  # missing path, empty folder, or a glob matching nothing
        candidates += found
    for list_file in list_files:
        for entry in read_input_list(list_file):
            spec = os.fsdecode(entry.path)
            if os.path.lexists(entry.path) and not os.path.isdir(entry.path):
                candidates.append(entry)  # a file entry keeps its relpath from the list
                continue
            if os.path.isdir(entry.path):
                found = [InputFile(f.path, f"{entry.relpath}/{f.relpath}") for f in _expand(spec)]
            else:  # a glob (relpaths from its root, as on the command line), or nothing
                found = _expand(spec)
            if not found:
                scan.unmatched.append(spec)
            candidates += found
    seen: set[str] = set()
    for item in sorted(candidates, key=lambda c: os.fsencode(c.path)):
        key = os.path.realpath(item.path)
        if key not in seen:
            seen.add(key)
            scan.files.append(item)
    return scan


def iter_audio_files(inputs: list[str], unmatched: list[str] | None = None) -> list[Path]:
    """Files from files, folders and globs, sorted and deduplicated.

    Inputs that match nothing are appended to ``unmatched`` when given; otherwise they raise
    `AudioNotFoundError`, so that nothing is silently dropped.
    """
    scan = scan_inputs(inputs)
    if unmatched is not None:
        unmatched.extend(scan.unmatched)
    elif scan.unmatched:
        shown = ", ".join(display_path(s) for s in scan.unmatched)
        raise AudioNotFoundError(f"{shown}: matched no audio files; check the paths.")
    return [f.path for f in scan.files]
