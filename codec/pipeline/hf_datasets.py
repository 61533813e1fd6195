"""A token store as a Hugging Face `datasets.Dataset`, for users' own pipelines (optional extra).

``pip install 'audiotok[datasets]'`` then::

    from codec.pipeline.hf_datasets import store_to_dataset
    ds = store_to_dataset("store/")          # one row per item
    ds[0]["codes"]                           # [K][T] ints

Rows carry the manifest fields (id, source, relpath, sha256, frames, seconds, channel) and the codes as
a nested list ``[K][T]`` (int16/int32 as stored). Items are read by memory map and converted to Arrow
in batches; pass ``arrow_file`` to write them to disk and memory-map them (stores larger than memory).
The store's metadata goes to ``ds.info.description`` as JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from codec.store import TokenStore

_FIELDS = ("id", "source", "relpath", "sha256", "frames", "seconds", "channel")


def _batches(store_path: str, schema: Any, rows_per_batch: int = 256) -> Iterator[Any]:
    import pyarrow as pa

    batch: list[dict[str, Any]] = []
    with TokenStore.open(store_path) as store:
        for row in store.rows():
            out = {k: row.get(k) for k in _FIELDS}
            out["codes"] = store.read(row["id"]).tolist()  # (K, T)
            batch.append(out)
            if len(batch) == rows_per_batch:
                yield pa.RecordBatch.from_pylist(batch, schema=schema)
                batch = []
    if batch:
        yield pa.RecordBatch.from_pylist(batch, schema=schema)


def _fingerprint(store_path: str) -> str:
    """Identity of the store's content: meta and manifests (items are immutable once listed)."""
    h = hashlib.sha256()
    for name in sorted(os.listdir(store_path)):
        if name == "meta.json" or name.startswith("manifest-"):
            with open(os.path.join(store_path, name), "rb") as f:
                h.update(name.encode() + f.read())
    return h.hexdigest()[:32]


def store_to_dataset(store_path: str | os.PathLike, arrow_file: str | os.PathLike | None = None) -> Any:
    """The store at ``store_path`` as a ``datasets.Dataset`` (one row per item, codes ``[K][T]``).

    By default the rows are built in memory. With ``arrow_file``, they are written there in batches
    and memory-mapped instead (for stores larger than memory). The fingerprint is computed from the
    store's manifests, so `datasets` never needs to hash (pickle) anything.
    Raises ImportError with the install command when `datasets` is missing, and `StoreError` for a
    missing or corrupt store.
    """
    try:
        import datasets
        import pyarrow as pa
    except ImportError:
        raise ImportError(
            "store_to_dataset needs the optional 'datasets' package: pip install 'audiotok[datasets]'"
        ) from None
    store_path = os.fspath(store_path)
    with TokenStore.open(store_path) as store:  # validate now, with a clear error, before datasets runs
        meta = store.meta
    int_type = "int16" if meta.dtype == "int16" else "int32"
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "source": datasets.Value("string"),
            "relpath": datasets.Value("string"),
            "sha256": datasets.Value("string"),
            "frames": datasets.Value("int64"),
            "seconds": datasets.Value("float64"),
            "channel": datasets.Value("int32"),
            "codes": datasets.Sequence(datasets.Sequence(datasets.Value(int_type))),
        }
    )
    info = datasets.DatasetInfo(description=json.dumps(asdict(meta)), features=features)
    schema = features.arrow_schema
    fingerprint = _fingerprint(store_path)
    if arrow_file is None:
        table = pa.Table.from_batches(list(_batches(store_path, schema)), schema=schema)
        return datasets.Dataset(table, info=info, fingerprint=fingerprint)
    with pa.OSFile(os.fspath(arrow_file), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for batch in _batches(store_path, schema):
            writer.write_batch(batch)
    return datasets.Dataset.from_file(os.fspath(arrow_file), info=info)
