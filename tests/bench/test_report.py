"""BENCHMARKS.md section updates (bench/report.py)."""

from __future__ import annotations

import re

from bench.report import BENCHMARKS, CONTENTS_END, CONTENTS_START, anchor, update_section, with_contents


def report(codec: str) -> str:
    """An evaluation report shaped like eval/codec_eval.py's markdown: a level-2 heading, level-3 tables."""
    return f"Codec `{codec}`.\n\n## Codec evaluation: {codec} on data/corpus (test)\n\n### speech (4 items)\n\n| a |\n"


def test_a_rewritten_section_replaces_its_nested_report_instead_of_piling_up(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    update_section("Codec speed", "fast", path=path)
    update_section("Codec quality", report("old@1"), path=path)
    update_section("Tokenization", "tokens", path=path)
    update_section("Codec quality", report("new@2"), path=path)

    text = path.read_text()
    assert "old@1" not in text
    headings = [line for line in text.splitlines() if line.startswith("#")]
    assert headings == [
        "# Benchmarks",
        "## Codec speed",
        "## Codec quality",
        "### Codec evaluation: new@2 on data/corpus (test)",
        "#### speech (4 items)",
        "## Tokenization",
    ]
    assert text.count("- command:") == 3


def test_bodies_without_level_2_headings_keep_theirs(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    update_section("Codec speed", "### encode\n\nfast", path=path)
    assert "\n### encode\n" in path.read_text()


def contents(text: str) -> list[str]:
    """The table of contents' entries, in order."""
    block = text[text.index(CONTENTS_START) + len(CONTENTS_START) : text.index(CONTENTS_END)]
    return [line for line in block.splitlines() if line.strip()]


def test_the_contents_follow_the_sections_through_reruns(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    update_section("Codec speed", "fast", path=path)
    update_section("Codec quality", report("old@1"), path=path)
    path.write_text(
        path.read_text() + "## Findings\n\n- a probe that lost (abc1234)\n"
    )  # a hand-written section
    update_section("Codec quality", report("new@2"), path=path)  # a rerun replaces its section in place
    update_section("Tokenization", "tokens", path=path)  # a new bench appends one

    text = path.read_text()
    assert text.count(CONTENTS_START) == 1 and text.count(CONTENTS_END) == 1
    assert text.index(CONTENTS_END) < text.index("\n## ")  # above the first section
    titles = [re.match(r"- \[(.+?)\]", line).group(1) for line in contents(text)]
    assert titles == ["Codec speed", "Codec quality", "Findings", "Tokenization"]
    assert "- [Codec speed](#codec-speed) (20" in contents(text)[0]  # the section's date
    assert contents(text)[2] == "- [Findings](#findings)"  # no date line, none shown
    assert "- a probe that lost (abc1234)" in text


def test_anchors_are_githubs():
    assert anchor("Codec quality on unseen words, band-limited to 5.5 kHz") == (
        "codec-quality-on-unseen-words-band-limited-to-55-khz"
    )
    assert anchor("Codec quality on recorded game audio (0ad-data, test split)") == (
        "codec-quality-on-recorded-game-audio-0ad-data-test-split"
    )
    text = "# B\n\n## Same title\n\nx\n\n## Same title\n\ny\n"
    assert contents(with_contents(text)) == ["- [Same title](#same-title)", "- [Same title](#same-title-1)"]


def test_benchmarks_md_contents_are_up_to_date():
    """A hand edit of BENCHMARKS.md is followed by `python -m bench.report` (it rewrites the contents)."""
    text = BENCHMARKS.read_text()
    assert CONTENTS_START in text
    assert with_contents(text) == text
