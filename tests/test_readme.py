"""The README's Python example runs as written (from the repository root, as the README says), and
prints what its last comment promises."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.M | re.S)


def test_the_readme_python_example_runs_as_written(monkeypatch):
    blocks = python_blocks((ROOT / "README.md").read_text())
    assert blocks, "README.md has no ```python block"
    example = blocks[0]
    monkeypatch.chdir(ROOT)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(example, "README.md", "exec"), {"__name__": "readme_example"})
    # The example's print line ends with a comment of what it prints ("... (1, 6, 192) 3000.0").
    promised = re.search(r"print\(.*\)\s*#\s*(?:\.\.\.\s*)?(.+)$", example, flags=re.M).group(1).strip()
    assert printed.getvalue().strip().endswith(promised), (printed.getvalue(), promised)
