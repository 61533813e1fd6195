"""tokenlm.train: the loss falls on a learnable stream, resume equals an uninterrupted run, two processes
train on disjoint shards, and bad data is one clear error that loses nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from stores import make_store

from tokenlm.data import DataError, TokenData
from tokenlm.patterns import get_pattern
from tokenlm.train import load_config, main, train

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "tokenlm" / "tiny.yaml"


def history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]


def test_loss_falls_on_a_learnable_stream(tmp_path):
    store = make_store(tmp_path / "store", items=16, frames=40)
    model_cfg, cfg = load_config(TINY)
    cfg = replace(cfg, steps=40, eval_every=20, log_every=20, ckpt_every=40)
    export = train(model_cfg, cfg, [str(store)], tmp_path / "run", quiet=True)
    rows = history(tmp_path / "run")
    # uniform over 16 codes is 4 bits a code; the stream is predictable from the code before
    assert rows[-1]["eval/bits_per_code"] < 1.5 < 4.0
    assert rows[-1]["eval/bits_per_second"] < rows[-1]["eval/raw_bits_per_second"] / 2
    assert (export / "model.safetensors").is_file()


def test_resume_equals_an_uninterrupted_run(tmp_path):
    store = make_store(tmp_path / "store", items=10, frames=[5, 40, 12, 33, 8, 50, 21, 3, 17, 40])
    model_cfg, cfg = load_config(TINY)
    straight = train(model_cfg, cfg, [str(store)], tmp_path / "straight", quiet=True)
    train(
        model_cfg, cfg, [str(store)], tmp_path / "resumed", max_steps=3, quiet=True
    )  # stops at a checkpoint
    assert sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir()) == ["step-0000003"]
    resumed = train(model_cfg, cfg, [str(store)], tmp_path / "resumed", quiet=True)
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_shards_are_disjoint_and_cover_the_training_items(tmp_path):
    store = make_store(tmp_path / "store", items=30, frames=20)
    data = TokenData([store], get_pattern("delay"), 3, 16, holdout_permille=100)
    shards = [{i.id for i in data.shard(r, 3)} for r in range(3)]
    assert not (shards[0] & shards[1] or shards[1] & shards[2] or shards[0] & shards[2])
    assert set.union(*shards) == {i.id for i in data.train_items}
    assert not {i.id for i in data.heldout_items} & set.union(*shards) and data.heldout_items
    again = TokenData([store], get_pattern("delay"), 3, 16, holdout_permille=100)
    assert [i.id for i in again.heldout_items] == [i.id for i in data.heldout_items]  # by id, every run
    one = data.batch(2, 32, seed=0, step=7, rank=1, world=3)
    assert all(torch.equal(one[k], again.batch(2, 32, seed=0, step=7, rank=1, world=3)[k]) for k in one)


def test_batches_pack_items_with_their_own_positions(tmp_path):
    store = make_store(tmp_path / "store", items=8, frames=[3, 4, 3, 5, 4, 3, 6, 2])  # shorter than a row
    data = TokenData([store], get_pattern("flatten"), 3, 16, holdout_permille=0)
    batch = data.batch(4, 64, seed=0, step=0)
    assert batch["tokens"].shape == (4, 1, 64)
    for doc, pos in zip(batch["doc"], batch["position_ids"]):
        assert doc.max() >= 2  # several items in a row
        starts = torch.nonzero(pos == 0).flatten()
        assert torch.equal(doc[starts[starts < (doc >= 0).sum()]], torch.arange(int(doc.max()) + 1))


@pytest.mark.slow
def test_two_processes_train_on_disjoint_shards(tmp_path):
    store = make_store(tmp_path / "store", items=20, frames=30)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "tokenlm.train",
           "--config", str(TINY), "--data", str(store), "--out", str(tmp_path / "run"), "--quiet"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    data = TokenData([store], get_pattern("delay"), 3, 16, holdout_permille=200)
    assert run["processes"] == 2 and run["shards"] == [len(data.shard(0, 2)), len(data.shard(1, 2))]
    assert (tmp_path / "run" / "export" / "model.safetensors").is_file()
    assert history(tmp_path / "run")[-1]["step"] == 6


def test_bad_data_is_one_clear_error_and_loses_nothing(tmp_path, capsys):
    (tmp_path / "notastore").mkdir()
    assert (
        main(["--config", str(TINY), "--data", str(tmp_path / "notastore"), "--out", str(tmp_path / "r")])
        == 2
    )
    assert "not a token store" in capsys.readouterr().err
    empty = make_store(tmp_path / "empty", items=0)
    with pytest.raises(DataError, match="no training items"):
        TokenData([empty], get_pattern("delay"), 3, 16)
    other = make_store(tmp_path / "other", items=2, codec_id="other-16k@111111111111")
    good = make_store(tmp_path / "good", items=4)
    with pytest.raises(DataError, match="one LM trains on one codec's tokens"):
        TokenData([good, other], get_pattern("delay"), 3, 16)
    with pytest.raises(DataError, match="at least 4 of 16"):
        TokenData([good], get_pattern("delay"), 4, 16)
    # a run resumed on another codec's store stops before touching its checkpoints
    model_cfg, cfg = load_config(TINY)
    train(model_cfg, cfg, [str(good)], tmp_path / "run", max_steps=3, quiet=True)
    before = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    other_big = make_store(tmp_path / "other_big", items=6, codec_id="other-16k@111111111111")
    with pytest.raises(DataError, match="trained on codec tiny-16k@000000000000"):
        train(model_cfg, cfg, [str(other_big)], tmp_path / "run", quiet=True)
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == before


def test_init_starts_from_an_export_and_refuses_another_shape_or_codec(tmp_path):
    store = make_store(tmp_path / "store", items=10, frames=30)
    model_cfg, cfg = load_config(TINY)
    first = train(model_cfg, replace(cfg, steps=6), [str(store)], tmp_path / "first", quiet=True)
    # zero steps from --init: the export is the weights it started from, to the bit (the export is fp32)
    same = train(model_cfg, cfg, [str(store)], tmp_path / "same", max_steps=0, quiet=True, init=first)
    a, b = load_file(str(first / "model.safetensors")), load_file(str(same / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "same" / "run.json").read_text())["init"] == {
        "from": str(first),
        "trained_steps": 6,
    }
    # a fine-tune differs from both its start and a run from scratch with the same seed; stopped and resumed
    # without --init, it still records what it started from
    train(
        model_cfg,
        replace(cfg, steps=4),
        [str(store)],
        tmp_path / "tuned",
        max_steps=2,
        quiet=True,
        init=first,
    )
    tuned = train(model_cfg, replace(cfg, steps=4), [str(store)], tmp_path / "tuned", quiet=True)
    meta = json.loads((tuned / "config.json").read_text())["audiotok"]
    assert meta["trained_steps"] == 4 and meta["init"] == {"from": str(first), "trained_steps": 6}
    scratch = train(model_cfg, replace(cfg, steps=4), [str(store)], tmp_path / "scratch", quiet=True)
    c, d = load_file(str(tuned / "model.safetensors")), load_file(str(scratch / "model.safetensors"))
    assert any(not torch.equal(a[k], c[k]) for k in a) and any(not torch.equal(c[k], d[k]) for k in c)
    wider = replace(model_cfg, hidden_size=model_cfg.hidden_size * 2)
    with pytest.raises(DataError, match="--init .*model config differs.*hidden_size"):
        train(wider, cfg, [str(store)], tmp_path / "wider", quiet=True, init=first)
    other = make_store(tmp_path / "other", items=10, frames=30, codec_id="other-16k@111111111111")
    with pytest.raises(DataError, match="--init .*trained on codec tiny-16k@000000000000"):
        train(model_cfg, cfg, [str(other)], tmp_path / "other_run", quiet=True, init=first)
    assert not (tmp_path / "other_run" / "checkpoints").exists()
