"""BENCHMARKS.md section updates (bench/report.py)."""

from __future__ import annotations

from bench.report import update_section


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
