"""The on-disk token store: memory-mappable shards of codes plus JSON manifests.

Layout of a store folder::

    meta.json                 StoreMeta: codec, rates, K, codebook size, dtype, format version
    shard-r0-00000.bin        raw little-endian codes; each item is one contiguous [K, T] block
    manifest-r0.jsonl         one JSON row per item: id, source, relpath, sha256, frames, shard, offset, ...
    failures-r0.jsonl         one JSON row per input that could not be tokenized: path, error

``r0`` is the writer tag. Each writer (one per process of a rank-sharded run) owns its shards, manifest
and failures file, so several processes can append to one store without locking each other; `open`
reads the union of all manifests. A writer tag is held by an flock while a store is open for append.

Crash safety (kill -9 at any moment): an item's bytes are written and flushed to its shard first, then
its manifest row is written as one line and fsynced. An item exists only through its manifest row, so
shard bytes past the last row are garbage from an interrupted append, and a last manifest line without
its newline is torn: readers ignore both, and reopening for append truncates them away.

Codes are stored as int16 when ``codebook_size <= 32768`` and int32 otherwise (little-endian either way).
Reads return a read-only ``numpy.memmap`` view of one item, so random access never loads a whole shard.
No pickle anywhere: JSON and raw arrays only.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1
META_FILE = "meta.json"
DEFAULT_SHARD_BYTES = 256 * 1024 * 1024
_ROW_KEYS = ("id", "frames", "shard", "offset")


class StoreError(ValueError):
    """A token store is missing, corrupt or used wrongly; the message names the file."""


def dtype_for(codebook_size: int) -> str:
    """The storage dtype for codes in ``[0, codebook_size)``: ``"int16"`` or ``"int32"``."""
    return "int16" if codebook_size <= 32768 else "int32"


@dataclass
class StoreMeta:
    """Store metadata (meta.json). ``codec`` is the name or path the store was made with (for decode)."""

    codec_id: str
    sample_rate: int
    frame_rate: float
    num_codebooks: int
    codebook_size: int
    weights_hash: str = ""
    codec: str | None = None
    dtype: str = ""
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if not self.dtype:
            self.dtype = dtype_for(self.codebook_size)
        if not self.weights_hash and "@" in self.codec_id:
            self.weights_hash = self.codec_id.rsplit("@", 1)[1]

    def bits_per_second(self) -> float:
        return self.num_codebooks * math.log2(self.codebook_size) * self.frame_rate


def _validate_meta(raw: Any, where: Path) -> StoreMeta:
    if not isinstance(raw, dict):
        raise StoreError(f"{where}: is not a JSON object; the store metadata is corrupt.")
    if raw.get("format_version") != FORMAT_VERSION:
        raise StoreError(
            f"{where}: format_version {raw.get('format_version')!r} is not supported "
            f"(this audiotok reads version {FORMAT_VERSION}); re-tokenize or upgrade audiotok."
        )
    known = {f.name for f in fields(StoreMeta)}
    missing = [
        k
        for k in ("codec_id", "sample_rate", "frame_rate", "num_codebooks", "codebook_size", "dtype")
        if k not in raw
    ]
    if missing:
        raise StoreError(f"{where}: is missing {', '.join(missing)}; the store metadata is corrupt.")
    meta = StoreMeta(**{k: v for k, v in raw.items() if k in known})
    ok = (
        isinstance(meta.num_codebooks, int)
        and meta.num_codebooks >= 1
        and isinstance(meta.codebook_size, int)
        and meta.codebook_size >= 2
        and isinstance(meta.sample_rate, int)
        and meta.sample_rate > 0
        and isinstance(meta.frame_rate, (int, float))
        and meta.frame_rate > 0
    )
    if not ok:
        raise StoreError(f"{where}: has invalid shapes or rates {raw}; the store metadata is corrupt.")
    if meta.dtype not in ("int16", "int32") or (meta.dtype == "int16" and meta.codebook_size > 32768):
        raise StoreError(f"{where}: dtype {meta.dtype!r} cannot hold codebook_size {meta.codebook_size}.")
    return meta


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_jsonl(path: Path, required: tuple[str, ...]) -> tuple[list[dict], int]:
    """Complete rows of a JSONL file and the byte length they span (a torn last line is left out)."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1  # bytes after the last newline: a torn line from an interrupted write
    rows = []
    for lineno, line in enumerate(data[:end].split(b"\n")[:-1], start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise StoreError(f"{path}: line {lineno} is not valid JSON; the file is corrupt.") from None
        if not isinstance(row, dict) or any(k not in row for k in required):
            raise StoreError(f"{path}: line {lineno} lacks {', '.join(required)}; the file is corrupt.")
        rows.append(row)
    return rows, end


class TokenStore:
    """A folder of code shards with manifests; see the module docstring for the layout and guarantees.

    Use `TokenStore.create` for a new store and `TokenStore.open` for an existing one. Items are
    ``[K, T]`` integer arrays identified by a string id.
    """

    def __init__(self, path: Path, meta: StoreMeta, mode: str, writer: str, shard_bytes: int) -> None:
        self.path = Path(path)
        self.meta = meta
        self.mode = mode
        self.writer = writer
        self.shard_bytes = shard_bytes
        self._dtype = np.dtype(meta.dtype).newbyteorder("<")
        self._rows: list[dict] = []
        self._index: dict[str, int] = {}
        self._hashes: dict[str, set[int | None]] = {}
        self._maps: dict[str, np.memmap] = {}
        self._lock_fd: int | None = None
        self._shard_file = None
        self._shard_name: str | None = None
        self._manifest_file = None

    # ----------------------------------------------------------------------------------- opening
    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        meta: StoreMeta,
        writer: str = "r0",
        shard_bytes: int = DEFAULT_SHARD_BYTES,
    ) -> TokenStore:
        """Make a new store at ``path`` (an absent or empty folder) and open it for appending."""
        path = Path(path)
        if (path / META_FILE).exists():
            raise StoreError(f"{path / META_FILE}: a store already exists here; open it with mode='a'.")
        leftovers = {META_FILE + ".tmp"}  # from a create killed before meta.json landed
        if path.exists() and (not path.is_dir() or any(p.name not in leftovers for p in path.iterdir())):
            raise StoreError(f"{path}: exists and is not an empty folder; choose a new store path.")
        path.mkdir(parents=True, exist_ok=True)
        _write_json_atomic(path / META_FILE, asdict(_validate_meta(asdict(meta), path / META_FILE)))
        return cls.open(path, mode="a", writer=writer, shard_bytes=shard_bytes)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        mode: str = "r",
        writer: str = "r0",
        shard_bytes: int = DEFAULT_SHARD_BYTES,
    ) -> TokenStore:
        """Open an existing store for reading (``"r"``) or appending (``"a"``, as writer ``writer``).

        Validates meta.json, every manifest row and every shard's size; raises `StoreError` naming
        the bad file. In append mode this writer's torn manifest tail and trailing shard bytes are
        truncated away.
        """
        if mode not in ("r", "a"):
            raise ValueError(f"mode must be 'r' or 'a', got {mode!r}")
        if not writer or not writer.replace("_", "").isalnum():
            raise ValueError(f"writer tag must be alphanumeric, got {writer!r}")
        path = Path(path)
        meta_path = path / META_FILE
        if not path.is_dir():
            raise StoreError(f"{path}: no token store here (not a folder); check the path.")
        if not meta_path.is_file():
            raise StoreError(f"{meta_path}: missing, so {path} is not a token store; check the path.")
        try:
            raw = json.loads(meta_path.read_text())
        except (ValueError, UnicodeDecodeError):
            raise StoreError(f"{meta_path}: is not valid JSON; the store metadata is corrupt.") from None
        store = cls(path, _validate_meta(raw, meta_path), mode, writer, shard_bytes)
        if mode == "a":
            store._acquire_writer_lock()
        try:
            store._load_manifests()
        except BaseException:
            store.close()
            raise
        return store

    def _acquire_writer_lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock, writers must use distinct tags
            return
        fd = os.open(self.path / f"writer-{self.writer}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StoreError(
                f"{self.path}: writer {self.writer!r} is in use by another process; use another writer tag."
            ) from None
        self._lock_fd = fd

    def _load_manifests(self) -> None:
        ends: dict[str, int] = {}  # shard name -> committed end in bytes
        for manifest in sorted(self.path.glob("manifest-*.jsonl")):
            rows, valid_bytes = _read_jsonl(manifest, _ROW_KEYS)
            own = manifest.name == f"manifest-{self.writer}.jsonl"
            if own and self.mode == "a" and valid_bytes < manifest.stat().st_size:
                os.truncate(manifest, valid_bytes)  # drop a torn line from an interrupted append
            for row in rows:
                self._check_row(row, manifest)
                end = row["offset"] + self._item_bytes(row["frames"])
                ends[row["shard"]] = max(ends.get(row["shard"], 0), end)
                self._add_row(row, manifest)
        for shard, end in ends.items():
            shard_path = self.path / shard
            if not shard_path.is_file():
                raise StoreError(
                    f"{shard_path}: missing, but the manifest lists items in it; the store is incomplete."
                )
            if shard_path.stat().st_size < end:
                raise StoreError(f"{shard_path}: is shorter than its manifest says; the shard is truncated.")
        if self.mode == "a":
            for shard_path in self.path.glob(f"shard-{self.writer}-*.bin"):
                end = ends.get(shard_path.name, 0)
                if shard_path.stat().st_size > end:
                    os.truncate(shard_path, end)  # bytes of an item whose manifest row never landed

    def _check_row(self, row: dict, manifest: Path) -> None:
        ok = (
            isinstance(row["id"], str)
            and isinstance(row["frames"], int)
            and row["frames"] >= 0
            and isinstance(row["offset"], int)
            and row["offset"] >= 0
            and row["offset"] % self._dtype.itemsize == 0
            and isinstance(row["shard"], str)
            and row["shard"] == Path(row["shard"]).name
            and row["shard"].startswith("shard-")
            and row["shard"].endswith(".bin")
        )
        if not ok:
            raise StoreError(
                f"{manifest}: row for id {row.get('id')!r} has invalid fields; the manifest is corrupt."
            )
        if row["id"] in self._index:
            raise StoreError(f"{manifest}: id {row['id']!r} appears twice; the store is corrupt.")

    def _add_row(self, row: dict, manifest: Path | None = None) -> None:
        self._index[row["id"]] = len(self._rows)
        self._rows.append(row)
        if row.get("sha256"):
            self._hashes.setdefault(row["sha256"], set()).add(row.get("channel"))

    def _item_bytes(self, frames: int) -> int:
        return self.meta.num_codebooks * frames * self._dtype.itemsize

    # ----------------------------------------------------------------------------------- reading
    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._index

    def ids(self) -> list[str]:
        """Item ids in manifest order (writers in tag order)."""
        return [r["id"] for r in self._rows]

    def rows(self) -> list[dict]:
        """Manifest rows (copies), in `ids` order."""
        return [dict(r) for r in self._rows]

    def row(self, item_id: str) -> dict:
        """The manifest row of one item (a copy)."""
        return dict(self._rows[self._lookup(item_id)])

    def _lookup(self, item_id: str) -> int:
        try:
            return self._index[item_id]
        except KeyError:
            raise KeyError(f"no item {item_id!r} in token store {self.path}") from None

    def read(self, item_id: str) -> np.ndarray:
        """Codes of one item, ``[K, T]``, as a read-only memory-mapped view (nothing else is loaded)."""
        row = self._rows[self._lookup(item_id)]
        num_codebooks, frames = self.meta.num_codebooks, row["frames"]
        if frames == 0:
            return np.zeros((num_codebooks, 0), dtype=self._dtype)
        mm = self._maps.get(row["shard"])
        if mm is None:
            mm = np.memmap(self.path / row["shard"], dtype=self._dtype, mode="r")
            self._maps[row["shard"]] = mm
        start = row["offset"] // self._dtype.itemsize
        return mm[start : start + num_codebooks * frames].reshape(num_codebooks, frames)  # (K, T)

    def has_source_hash(self, sha256: str, channel: int | None = None) -> bool:
        """Whether an item from a source with this content hash is stored (for ``channel`` if given)."""
        channels = self._hashes.get(sha256)
        if channels is None:
            return False
        return channel is None or channel in channels

    def source_hashes(self) -> frozenset[str]:
        """Content hashes of all stored sources (a snapshot: safe to hand to reader threads)."""
        return frozenset(self._hashes)

    def total_frames(self) -> int:
        return sum(r["frames"] for r in self._rows)

    def total_seconds(self) -> float:
        """Audio seconds covered by the stored items (per channel item when channels were split)."""
        return sum(r.get("seconds", r["frames"] / self.meta.frame_rate) for r in self._rows)

    def failures(self) -> list[dict]:
        """The latest recorded failure per source path, leaving out sources stored since then."""
        stored = {r.get("source") for r in self._rows}
        latest: dict[str, dict] = {}
        for path in sorted(self.path.glob("failures-*.jsonl")):
            rows, _ = _read_jsonl(path, ("path", "error"))
            for row in rows:
                latest[row["path"]] = row
        return [row for p, row in latest.items() if p not in stored]

    # ----------------------------------------------------------------------------------- writing
    def _require_append(self) -> None:
        if self.mode != "a":
            raise StoreError(f"{self.path}: is open read-only; open it with mode='a' to append.")

    def _next_shard(self, nbytes: int) -> str:
        """The shard name for the next item, rolling over when the current one would pass the limit."""
        if self._shard_name is None:
            existing = sorted(self.path.glob(f"shard-{self.writer}-*.bin"))
            self._shard_name = existing[-1].name if existing else f"shard-{self.writer}-00000.bin"
        current = self.path / self._shard_name
        size = current.stat().st_size if current.exists() else 0
        if size == 0 or size + nbytes <= self.shard_bytes:
            return self._shard_name
        index = int(Path(self._shard_name).stem.rsplit("-", 1)[1]) + 1
        return f"shard-{self.writer}-{index:05d}.bin"

    def append(
        self,
        item_id: str,
        codes: Any,
        source: str | None = None,
        relpath: str | None = None,
        sha256: str | None = None,
        seconds: float | None = None,
        channel: int | None = None,
        **extra: Any,
    ) -> dict:
        """Store one item's codes ``[K, T]`` (tensor or array) and return its manifest row.

        The item is visible (to this and later opens) only once its manifest row is fsynced.
        """
        self._require_append()
        if item_id in self._index:
            raise StoreError(f"{self.path}: already holds an item with id {item_id!r}.")
        if hasattr(codes, "detach"):
            codes = codes.detach().cpu().numpy()
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[0] != self.meta.num_codebooks:
            raise ValueError(f"codes must be [K={self.meta.num_codebooks}, T], got shape {codes.shape}")
        if codes.size and (codes.min() < 0 or codes.max() >= self.meta.codebook_size):
            raise ValueError(f"codes must lie in [0, {self.meta.codebook_size}); item {item_id!r} does not")
        data = np.ascontiguousarray(codes, dtype=self._dtype).tobytes()
        shard = self._next_shard(len(data))
        if shard != self._shard_name or self._shard_file is None:
            if self._shard_file is not None:
                self._shard_file.close()
            self._shard_file = open(self.path / shard, "ab")
            self._shard_name = shard
        f = self._shard_file
        offset = f.seek(0, os.SEEK_END)
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
        row = {
            "id": item_id,
            "source": source,
            "relpath": relpath,
            "sha256": sha256,
            "frames": int(codes.shape[1]),
            "shard": shard,
            "offset": offset,
            "seconds": seconds if seconds is not None else codes.shape[1] / self.meta.frame_rate,
        }
        if channel is not None:
            row["channel"] = channel
        row.update(extra)
        if self._manifest_file is None:
            self._manifest_file = open(self.path / f"manifest-{self.writer}.jsonl", "ab")
        self._manifest_file.write(json.dumps(row).encode() + b"\n")
        self._manifest_file.flush()
        os.fsync(self._manifest_file.fileno())
        self._maps.pop(shard, None)  # the shard grew: remap on the next read
        self._add_row(row)
        return dict(row)

    def record_failure(self, path: str, message: str) -> None:
        """Record that the input ``path`` could not be tokenized, and why."""
        self._require_append()
        line = json.dumps({"path": path, "error": message}).encode() + b"\n"
        with open(self.path / f"failures-{self.writer}.jsonl", "ab") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def close(self) -> None:
        """Close files and memory maps and release the writer lock."""
        for f in (self._shard_file, self._manifest_file):
            if f is not None:
                f.close()
        self._shard_file = self._manifest_file = None
        self._shard_name = None
        self._maps.clear()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the fd releases the flock
            self._lock_fd = None

    def __enter__(self) -> TokenStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"TokenStore({str(self.path)!r}, items={len(self)}, codec_id={self.meta.codec_id!r}, "
            f"K={self.meta.num_codebooks}, mode={self.mode!r})"
        )


def store_items_equal(a: str | os.PathLike, b: str | os.PathLike) -> list[str]:
    """Differences between two stores item for item (ids, sources, hashes, frames, codes); [] if equal."""
    problems: list[str] = []
    with TokenStore.open(a) as sa, TokenStore.open(b) as sb:
        ids_a, ids_b = set(sa.ids()), set(sb.ids())
        if ids_a != ids_b:
            problems.append(
                f"ids differ: only in {a}: {sorted(ids_a - ids_b)[:5]}, only in {b}: {sorted(ids_b - ids_a)[:5]}"
            )
        for item_id in sorted(ids_a & ids_b):
            ra, rb = sa.row(item_id), sb.row(item_id)
            for key in ("sha256", "relpath", "frames", "channel"):
                if ra.get(key) != rb.get(key):
                    problems.append(f"{item_id}: {key} {ra.get(key)!r} != {rb.get(key)!r}")
            if not np.array_equal(sa.read(item_id), sb.read(item_id)):
                problems.append(f"{item_id}: codes differ")
    return problems
