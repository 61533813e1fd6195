"""tokenlm tests: each starts from a fresh accelerate state (it is process-wide, and another package's
tests may have set a mixed precision that cannot change once set)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)
