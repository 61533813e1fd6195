"""Shared by the benchmarks: machine description and section-wise updates of BENCHMARKS.md."""

from __future__ import annotations

import datetime
import os
import platform
import re
import shlex
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, Python {platform.python_version()}"


def command() -> str:
    return "python " + " ".join(shlex.quote(a) for a in sys.argv)


def update_section(title: str, body: str, path: Path = BENCHMARKS, recorded: dict | None = None) -> None:
    """Replace (or append) the ``## title`` section of BENCHMARKS.md with ``body``, stamped with the
    command, the machine and the date: this process's, or ``recorded`` ones (keys command, machine,
    date) for figures measured elsewhere, such as on a lent GPU machine. Headings in ``body`` are
    demoted below the section's when it has level-2 ones. Earlier figures live in the file's git history."""
    recorded = recorded or {}
    # A body's own headings go one level down, so a level-2 heading inside it (an evaluation report's
    # "## Codec evaluation: ...") cannot end the section early: the next update replaces all of it.
    if re.search(r"^## ", body, flags=re.M):
        body = re.sub(r"^(#{2,}) ", r"#\1 ", body, flags=re.M)
    now = f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}"
    stamp = (
        f"## {title}\n\n"
        f"- command: `{recorded.get('command', command())}`\n- machine: {recorded.get('machine', machine())}\n"
        f"- date: {recorded.get('date', now)}\n\n{body.strip()}\n\n"
    )
    text = (
        path.read_text()
        if path.exists()
        else "# Benchmarks\n\nEach section is written by the script in its command.\n\n"
    )
    head = f"## {title}\n"
    if head in text:
        start = text.index(head)
        nxt = text.find("\n## ", start + len(head))
        text = text[:start] + stamp + (text[nxt + 1 :] if nxt != -1 else "")
    else:
        text = text.rstrip() + "\n\n" + stamp
    path.write_text(text)
