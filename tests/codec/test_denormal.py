"""The shipped default codec computes without subnormal (denormal) float32 numbers.

Arithmetic on subnormals can be many times slower on x86 CPUs (microcode assists), and the usual remedy,
``torch.set_flush_denormal(True)``, is a per-thread process setting a library must not need. These tests
pin the current state: no subnormal fp32 value in the loaded weights (the fp16 export's own subnormals,
down to 6e-8, are normal numbers in fp32), and none in the inputs or outputs of any op the encoder runs on
the bundled clips.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from codec.audio import load_audio
from codec.registry import load_codec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.wav"))
TINY = torch.finfo(torch.float32).tiny


def subnormals(t: torch.Tensor) -> int:
    """Nonzero float32 (or complex64 part) values below the smallest normal number."""
    if t.dtype == torch.complex64:
        t = torch.view_as_real(t)
    if t.dtype != torch.float32:
        return 0
    return int(((t != 0) & (t.abs() < TINY)).sum())


class CountSubnormals(TorchDispatchMode):
    """Counts subnormal values in the tensor inputs and outputs of every aten op, by op name."""

    def __init__(self):
        super().__init__()
        self.found: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        tensors = [t for t in tree_flatten((args, kwargs, out))[0] if isinstance(t, torch.Tensor)]
        n = sum(subnormals(t) for t in tensors)
        if n:
            self.found[str(func)] = self.found.get(str(func), 0) + n
        return out


@pytest.fixture(scope="module")
def codec():
    return load_codec("default")


def test_counter_sees_subnormals():
    counter = CountSubnormals()
    with counter:
        torch.full((3,), 1e-20) * 1e-20
    assert counter.found == {"aten.mul.Tensor": 3}


def test_default_weights_have_no_subnormal_float32(codec):
    found = {k: subnormals(v) for k, v in codec.model.state_dict().items() if subnormals(v)}
    assert found == {}


@pytest.mark.parametrize("clip", EXAMPLES, ids=lambda p: p.stem)
def test_encoder_makes_no_subnormal_activations(codec, clip):
    wav = load_audio(clip, target_sr=16000).wav
    counter = CountSubnormals()
    with counter:
        codec.encode(wav, 16000)
    assert counter.found == {}
