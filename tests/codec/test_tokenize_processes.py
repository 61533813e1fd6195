"""`audiotok tokenize` as real processes: kill -9 at several points then resume, and two ranks (gloo).

Both compare against an uninterrupted single-process run item for item (ids, hashes, frames, codes).
Each starts several Python processes (about 3 s of imports each), so they are marked slow.
"""

from __future__ import annotations

import os
import shutil
import signal as signals
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_tokenize import signal, tiny_codec

from codec.store import TokenStore, store_items_equal

pytestmark = pytest.mark.slow
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("proc")
    tiny_codec().save_pretrained(root / "codec")
    corpus = root / "in"
    corpus.mkdir()
    for i in range(48):
        sr = (16000, 22050)[i % 2]
        sf.write(corpus / f"f{i:02d}.wav", signal(0.2 + 0.05 * (i % 7), sr, seed=i), sr)
    sf.write(corpus / "broken.wav", np.zeros(0), 16000)  # one failure, recorded each run
    return root


def _cmd(root: Path, store: Path) -> list[str]:
    return [
        sys.executable, "-m", "audiotok", "tokenize", str(root / "in"), "-o", str(store),
        "--codec", str(root / "codec"), "--batch-seconds", "0.4", "--quiet", "--jobs", "2",
    ]  # fmt: skip


def _manifest_rows(store: Path) -> int:
    try:
        return (store / "manifest-r0.jsonl").read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_kill_9_then_resume_equals_uninterrupted(setup):
    root = setup
    reference = root / "reference"
    done = subprocess.run(_cmd(root, reference), env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "broken.wav" in done.stderr  # the empty file: partial failure
    store = root / "killed"
    kills = 0
    for target in (1, 9, 30):  # kill once this many items are visible (or the run ends first)
        proc = subprocess.Popen(
            _cmd(root, store), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 120
        while proc.poll() is None and _manifest_rows(store) < target and time.monotonic() < deadline:
            time.sleep(0.002)
        if proc.poll() is None:
            os.kill(proc.pid, signals.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
        with TokenStore.open(store) as s:  # opens cleanly after a kill at any moment
            assert len(s) == len(set(s.ids()))
    assert kills >= 2
    final = subprocess.run(_cmd(root, store), env=ENV, capture_output=True, text=True, timeout=300)
    assert final.returncode == 1, final.stderr
    assert store_items_equal(reference, store) == []
    with TokenStore.open(store) as s:
        assert [os.path.basename(f["path"]) for f in s.failures()] == ["broken.wav"]


def _launcher(n: int) -> list[str]:
    """`accelerate launch` (torchrun underneath) for n local CPU processes; `--cpu` alone runs one."""
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable))
    if accelerate:
        return [
            accelerate, "launch", "--multi_gpu", "--num_processes", str(n), "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "-m",
        ]  # fmt: skip
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n), "-m"]


def test_two_ranks_equal_one_process(setup):
    root = setup
    one = root / "one"
    subprocess.run(_cmd(root, one), env=ENV, capture_output=True, timeout=300)
    two = root / "two"
    env = {**ENV, "CUDA_VISIBLE_DEVICES": ""}
    cmd = _launcher(2) + _cmd(root, two)[2:] + ["--json"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]  # broken.wav: partial failure on its rank
    assert sorted(p.name for p in two.glob("manifest-*.jsonl")) == ["manifest-r0.jsonl", "manifest-r1.jsonl"]
    assert store_items_equal(one, two) == []
    summary = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(summary) == 1 and '"world_size": 2' in summary[0] and '"stored": 48' in summary[0]
