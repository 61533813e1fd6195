"""Interleaving patterns: exact round trips over random shapes, and the layouts their docstrings draw."""

from __future__ import annotations

import pytest
import torch

from tokenlm.patterns import EMPTY, PATTERNS, get_pattern


@pytest.mark.parametrize("name", list(PATTERNS))
def test_round_trip_over_random_shapes(name):
    pattern = get_pattern(name)
    g = torch.Generator().manual_seed(0)
    for _ in range(40):
        B, K, T = (int(torch.randint(1, n, (1,), generator=g)) for n in (4, 13, 30))
        codes = torch.randint(0, 1024, (B, K, T), generator=g)
        sequence = pattern.build(codes, empty=1024)
        Q = K if pattern.multi_stream else 1
        assert sequence.shape[:2] == (B, Q) and sequence.shape[2] == pattern.num_steps(K, T)
        assert torch.equal(pattern.revert(sequence, K, T), codes)
        # every code sits in exactly one cell, and only empty cells hold the empty value
        layout = pattern.layout(K, T)
        assert sorted(layout[layout >= 0].tolist()) == list(range(K * T))
        assert int((sequence == 1024).sum()) == B * int((layout == EMPTY).sum())


def _drawn(name: str) -> list[str]:
    """The layout of K=3, T=4 as the docstrings draw it: a0 b0 ... and '.' for empty."""
    layout = get_pattern(name).layout(3, 4)
    return [" ".join("." if i < 0 else f"{'abc'[i // 4]}{i % 4}" for i in row.tolist()) for row in layout]


def test_layouts_match_their_drawings():
    assert _drawn("flatten") == ["a0 b0 c0 a1 b1 c1 a2 b2 c2 a3 b3 c3"]
    assert _drawn("coarse_first") == ["a0 a1 a2 a3 b0 c0 b1 c1 b2 c2 b3 c3"]
    assert _drawn("delay") == ["a0 a1 a2 a3 . .", ". b0 b1 b2 b3 .", ". . c0 c1 c2 c3"]
    assert _drawn("parallel") == ["a0 a1 a2 a3", "b0 b1 b2 b3", "c0 c1 c2 c3"]
    for name in PATTERNS:  # each docstring draws exactly this layout
        doc = get_pattern(name).__doc__
        assert all(" ".join(row.split()) in " ".join(doc.split()) for row in _drawn(name)), name


def test_codebook_of_each_cell():
    assert get_pattern("delay").codebook_of(3, 2).tolist() == [[0, 0, -1, -1], [-1, 1, 1, -1], [-1, -1, 2, 2]]
    assert get_pattern("flatten").codebook_of(2, 2).tolist() == [[0, 1, 0, 1]]


def test_bad_input_is_one_clear_error():
    with pytest.raises(ValueError, match="unknown pattern 'zigzag'"):
        get_pattern("zigzag")
    with pytest.raises(ValueError, match=r"delay: a sequence of K=3, T=4 has shape \[B, 3, 6\]"):
        get_pattern("delay").revert(torch.zeros(1, 3, 5, dtype=torch.long), 3, 4)
