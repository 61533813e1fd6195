"""The on-disk token store (codec/store.py): round trips, append/reopen, memmap reads, corruption."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from codec.store import StoreError, StoreMeta, TokenStore, dtype_for


def _meta(num_codebooks: int = 4, codebook_size: int = 1024) -> StoreMeta:
    return StoreMeta(
        codec_id="test-codec@abc123",
        sample_rate=16000,
        frame_rate=50.0,
        num_codebooks=num_codebooks,
        codebook_size=codebook_size,
        codec="default",
    )


def _codes(frames: int, seed: int, num_codebooks: int = 4, codebook_size: int = 1024) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, codebook_size, size=(num_codebooks, frames))


def _fill(path, lengths=(7, 1, 30, 0, 12), **kw) -> dict[str, np.ndarray]:
    items = {f"item{i}": _codes(n, i) for i, n in enumerate(lengths)}
    with TokenStore.create(path, _meta(), **kw) as store:
        for i, (item_id, codes) in enumerate(items.items()):
            store.append(
                item_id, codes, source=f"/data/{item_id}.wav", relpath=f"{item_id}.wav", sha256=f"{i:064x}"
            )
    return items


def test_exact_round_trip_and_meta(tmp_path):
    items = _fill(tmp_path / "s")
    store = TokenStore.open(tmp_path / "s")
    assert len(store) == len(items) and store.ids() == list(items)
    for item_id, codes in items.items():
        got = store.read(item_id)
        assert got.shape == codes.shape and np.array_equal(got, codes)
    assert store.total_frames() == sum(c.shape[1] for c in items.values())
    assert store.meta == _meta() and store.meta.dtype == "int16" and store.meta.weights_hash == "abc123"
    row = store.row("item2")
    assert row["frames"] == 30 and row["relpath"] == "item2.wav" and row["seconds"] == pytest.approx(0.6)
    assert store.has_source_hash(f"{2:064x}") and not store.has_source_hash("f" * 64)
    with pytest.raises(KeyError, match="nope"):
        store.read("nope")
    store.close()


def test_dtype_choice_and_int32_round_trip(tmp_path):
    assert dtype_for(32768) == "int16" and dtype_for(32769) == "int32"
    codes = np.array([[0, 65535, 40000]])
    with TokenStore.create(tmp_path / "s", _meta(num_codebooks=1, codebook_size=65536)) as store:
        store.append("x", torch.from_numpy(codes))
    with TokenStore.open(tmp_path / "s") as store:
        assert store.meta.dtype == "int32" and np.array_equal(store.read("x"), codes)


def test_append_and_reopen(tmp_path):
    items = _fill(tmp_path / "s")
    with TokenStore.open(tmp_path / "s", mode="a") as store:
        store.append("more", _codes(9, 99))
        with pytest.raises(StoreError, match="already holds"):
            store.append("more", _codes(9, 99))
    with TokenStore.open(tmp_path / "s") as store:
        assert store.ids() == [*items, "more"] and np.array_equal(store.read("more"), _codes(9, 99))
        with pytest.raises(StoreError, match="read-only"):
            store.append("x", _codes(1, 0))


def test_append_validates_codes(tmp_path):
    with TokenStore.create(tmp_path / "s", _meta()) as store:
        with pytest.raises(ValueError, match="K=4"):
            store.append("a", np.zeros((3, 5), dtype=np.int64))
        with pytest.raises(ValueError, match="1024"):
            store.append("b", np.full((4, 5), 1024))
    with pytest.raises(StoreError, match="already exists"):
        TokenStore.create(tmp_path / "s", _meta())


def test_read_is_a_memmap_view(tmp_path):
    items = _fill(tmp_path / "s")
    with TokenStore.open(tmp_path / "s") as store:
        view = store.read("item2")
        assert isinstance(view.base, np.memmap) or isinstance(view, np.memmap)
        assert not view.flags.writeable
        assert np.array_equal(view, items["item2"])


def test_shards_roll_over(tmp_path):
    items = _fill(tmp_path / "s", lengths=(10,) * 6, shard_bytes=200)  # 4 * 10 * 2 = 80 bytes per item
    shards = sorted(p.name for p in (tmp_path / "s").glob("shard-*.bin"))
    assert shards == ["shard-r0-00000.bin", "shard-r0-00001.bin", "shard-r0-00002.bin"]
    with TokenStore.open(tmp_path / "s") as store:
        assert all(np.array_equal(store.read(i), c) for i, c in items.items())


def test_two_writers_share_a_folder(tmp_path):
    with TokenStore.create(tmp_path / "s", _meta(), writer="r0") as a:
        a.append("a0", _codes(5, 1))
        with TokenStore.open(tmp_path / "s", mode="a", writer="r1") as b:
            b.append("b0", _codes(6, 2))
            a.append("a1", _codes(7, 3))
            with pytest.raises(StoreError, match="in use"):
                TokenStore.open(tmp_path / "s", mode="a", writer="r1")
            b.record_failure("/x/bad.wav", "bad.wav: not audio")
    with TokenStore.open(tmp_path / "s") as store:
        assert store.ids() == ["a0", "a1", "b0"]
        assert np.array_equal(store.read("b0"), _codes(6, 2))
        assert store.failures() == [{"path": "/x/bad.wav", "error": "bad.wav: not audio"}]


def test_failures_latest_per_path_and_cleared_when_stored(tmp_path):
    with TokenStore.create(tmp_path / "s", _meta()) as store:
        store.record_failure("/a.wav", "first")
        store.record_failure("/a.wav", "second")
        store.record_failure("/b.wav", "broken")
        assert [f["error"] for f in store.failures()] == ["second", "broken"]
        store.append("b", _codes(3, 0), source="/b.wav")
        assert [f["path"] for f in store.failures()] == ["/a.wav"]


def test_torn_manifest_tail_is_ignored_then_truncated(tmp_path):
    items = _fill(tmp_path / "s")
    manifest = tmp_path / "s" / "manifest-r0.jsonl"
    good_size = manifest.stat().st_size
    with open(manifest, "ab") as f:
        f.write(b'{"id": "half", "frames": 3, "sha')  # a kill in the middle of writing a row
    with TokenStore.open(tmp_path / "s") as store:  # read mode: ignored, file untouched
        assert store.ids() == list(items)
    assert manifest.stat().st_size > good_size
    with TokenStore.open(tmp_path / "s", mode="a") as store:  # append mode: truncated, then appended
        store.append("next", _codes(4, 5))
    with TokenStore.open(tmp_path / "s") as store:
        assert store.ids() == [*items, "next"] and np.array_equal(store.read("next"), _codes(4, 5))


def test_trailing_shard_garbage_is_ignored(tmp_path):
    items = _fill(tmp_path / "s")
    shard = tmp_path / "s" / "shard-r0-00000.bin"
    size = shard.stat().st_size
    with open(shard, "ab") as f:
        f.write(b"\x07" * 123)  # bytes of an item whose manifest row never landed
    with TokenStore.open(tmp_path / "s", mode="a") as store:
        assert shard.stat().st_size == size
        store.append("next", _codes(4, 5))
    with TokenStore.open(tmp_path / "s") as store:
        assert all(np.array_equal(store.read(i), c) for i, c in items.items())
        assert np.array_equal(store.read("next"), _codes(4, 5))


def _corrupt_meta(path, **changes):
    meta_path = path / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta.update(changes)
    meta_path.write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "changes,match",
    [
        ({"format_version": 99}, "format_version"),
        ({"dtype": "int16", "codebook_size": 70000}, "dtype"),
        ({"dtype": "float32"}, "dtype"),
        ({"num_codebooks": 0}, "invalid"),
        ({"frame_rate": "fast"}, "invalid"),
    ],
)
def test_bad_meta_names_the_file(tmp_path, changes, match):
    _fill(tmp_path / "s")
    _corrupt_meta(tmp_path / "s", **changes)
    with pytest.raises(StoreError, match=match) as info:
        TokenStore.open(tmp_path / "s")
    assert "meta.json" in str(info.value)


def test_corrupt_store_errors_name_the_file(tmp_path):
    with pytest.raises(StoreError, match="not a folder"):
        TokenStore.open(tmp_path / "absent")
    (tmp_path / "plain").mkdir()
    with pytest.raises(StoreError, match="meta.json"):
        TokenStore.open(tmp_path / "plain")

    _fill(tmp_path / "s")
    (tmp_path / "s" / "meta.json").write_text("{not json")
    with pytest.raises(StoreError, match="meta.json.*not valid JSON"):
        TokenStore.open(tmp_path / "s")

    _fill(tmp_path / "t")
    manifest = tmp_path / "t" / "manifest-r0.jsonl"
    lines = manifest.read_bytes().split(b"\n")
    manifest.write_bytes(b"\n".join([lines[0], b"garbage", *lines[1:]]))
    with pytest.raises(StoreError, match="manifest-r0.jsonl: line 2"):
        TokenStore.open(tmp_path / "t")

    _fill(tmp_path / "u")
    shard = tmp_path / "u" / "shard-r0-00000.bin"
    shard.write_bytes(shard.read_bytes()[:10])
    with pytest.raises(StoreError, match="shard-r0-00000.bin.*truncated"):
        TokenStore.open(tmp_path / "u")
    shard.unlink()
    with pytest.raises(StoreError, match="shard-r0-00000.bin.*missing"):
        TokenStore.open(tmp_path / "u")


def test_kill_during_append_leaves_a_consistent_store(tmp_path):
    """Simulate a kill at each step of an append: after the shard write, and mid-row."""
    items = _fill(tmp_path / "s")
    with TokenStore.open(tmp_path / "s", mode="a") as store:
        store.append("x", _codes(5, 7))
    full_manifest = (tmp_path / "s" / "manifest-r0.jsonl").read_bytes()
    last_row_start = full_manifest.rstrip(b"\n").rfind(b"\n") + 1
    for cut in (last_row_start, last_row_start + 10, len(full_manifest) - 1):
        (tmp_path / "s" / "manifest-r0.jsonl").write_bytes(full_manifest[:cut])
        with TokenStore.open(tmp_path / "s", mode="a") as store:
            assert store.ids() == list(items)  # the unfinished item is invisible
            store.append("x", _codes(5, 7))  # and re-running finishes the job
        with TokenStore.open(tmp_path / "s") as store:
            assert store.ids() == [*items, "x"] and np.array_equal(store.read("x"), _codes(5, 7))


def test_create_after_a_killed_create(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "meta.json.tmp").write_text('{"codec_id": ')  # killed while writing meta.json
    with TokenStore.create(tmp_path / "s", _meta()) as store:
        store.append("a", _codes(2, 0))
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "other.txt").write_text("user data")
    with pytest.raises(StoreError, match="not an empty folder"):
        TokenStore.create(tmp_path / "t", _meta())


def test_source_hashes_snapshot(tmp_path):
    with TokenStore.create(tmp_path / "s", _meta()) as store:
        store.append("a", _codes(2, 0), sha256="aa")
        snapshot = store.source_hashes()
        store.append("b", _codes(2, 1), sha256="bb")
        assert snapshot == {"aa"} and store.source_hashes() == {"aa", "bb"}
