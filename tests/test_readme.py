"""The README's Python examples run as written (from the repository root, as the README says), and each
print line that ends with a comment prints what the comment promises."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.M | re.S)


BLOCKS = python_blocks((ROOT / "README.md").read_text())


def test_the_readme_has_python_examples():
    assert BLOCKS, "README.md has no ```python block"


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_the_readme_python_example_runs_as_written(index, monkeypatch):
    example = BLOCKS[index]
    monkeypatch.chdir(ROOT)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(example, f"README.md block {index + 1}", "exec"), {"__name__": "readme_example"})
    # A print line may end with a comment of what it prints ("... (1, 6, 192) 3000.0").
    promise = re.search(r"print\(.*\)\s*#\s*(?:\.\.\.\s*)?(.+)$", example, flags=re.M)
    if promise:
        assert printed.getvalue().strip().endswith(promise.group(1).strip()), (
            printed.getvalue(),
            promise.group(1),
        )
