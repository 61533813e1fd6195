"""Shared by the benchmarks: machine description and section-wise updates of BENCHMARKS.md.

Every write also rewrites the file's table of contents (a list between two HTML comments, before the
first ``## `` section) from its ``## `` headings, so a rerun that adds or replaces a section keeps it
true. ``python -m bench.report`` rewrites only the contents, after a hand edit.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import shlex
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
CONTENTS_START = "<!-- contents: written by bench/report.py from the '## ' headings -->"
CONTENTS_END = "<!-- end of contents -->"


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
    path.write_text(with_contents(text))


def anchor(title: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def with_contents(text: str) -> str:
    """``text`` with its table of contents (one line per ``## `` section, in order, with the section's
    date when it has one) replacing the old one, or inserted before the first section."""
    sections = re.split(r"^(?=## )", text, flags=re.M)[1:]
    seen: dict[str, int] = {}
    entries = []
    for section in sections:
        title = section.split("\n", 1)[0][3:].strip()
        base = anchor(title)
        repeats = seen.get(base, 0)
        seen[base] = repeats + 1
        slug = f"{base}-{repeats}" if repeats else base  # GitHub numbers repeated anchors: x, x-1, x-2
        date = re.search(r"^- date: (\d{4}-\d\d-\d\d)", section, flags=re.M)
        entries.append(f"- [{title}](#{slug})" + (f" ({date.group(1)})" if date else ""))
    block = "\n".join([CONTENTS_START, *entries, CONTENTS_END])
    if CONTENTS_START in text and CONTENTS_END in text:
        start, end = text.index(CONTENTS_START), text.index(CONTENTS_END) + len(CONTENTS_END)
        return text[:start] + block + text[end:]
    first = re.search(r"^## ", text, flags=re.M)
    if first is None:
        return text.rstrip() + "\n\n" + block + "\n"
    return text[: first.start()] + block + "\n\n" + text[first.start() :]


if __name__ == "__main__":
    BENCHMARKS.write_text(with_contents(BENCHMARKS.read_text()))
