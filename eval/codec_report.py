"""The codec evaluation's results: one `ItemResult` per item and system setting, `SummaryRow` aggregates
(mean and median, NaNs left out and counted) per (system, setting, kind), and the `CodecReport` that
writes them as JSON (with the metric implementations and versions, the split, nominal and measured
bitrates) and as a markdown table per kind.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

from eval.asr import WordErrors, corpus_wer
from eval.metrics import HIGHER_IS_BETTER, KINDS, METRIC_NAMES, OPTIONAL_METRICS, Metrics

REPORT_FORMAT = "audiotok-codec-eval/1"


@dataclass
class ItemResult:
    """Scores of one reference item through one system setting."""

    path: str
    kind: str
    system: str  # the codec's id or the baseline's name
    setting: str  # "K=6" for the codec, the baseline's name for a baseline
    seconds: float
    nominal_bps: float
    measured_bps: float
    encode_seconds: float
    decode_seconds: float
    metrics: Metrics
    wer: WordErrors | None = None  # speech with a transcriber only


@dataclass
class SummaryRow:
    """Aggregate over the items of one kind through one system setting.

    metrics: name -> {"mean", "median", "n"} over items where the metric is defined (n counts them).
    encode_x_realtime / decode_x_realtime: total audio seconds / total wall seconds.
    """

    system: str
    setting: str
    kind: str
    num_items: int
    nominal_bps: float
    measured_bps: float
    metrics: dict[str, dict[str, float | int | None]]
    encode_x_realtime: float
    decode_x_realtime: float
    wer: dict[str, float | int | None] | None = None  # {"wer", "errors", "words", "items"} with a transcriber


@dataclass
class CodecReport:
    """What `evaluate_codec` found; `to_json` / `to_markdown` write it."""

    meta: dict
    items: list[ItemResult] = field(default_factory=list)
    summary: list[SummaryRow] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return _json_safe(
            {
                "format": REPORT_FORMAT,
                "meta": self.meta,
                "summary": [asdict(r) for r in self.summary],
                "items": [asdict(r) for r in self.items],
                "failures": self.failures,
            }
        )

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The report as JSON text (NaN written as null); also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def to_markdown(self) -> str:
        """One table per kind, rows ordered by measured bitrate; arrows say which way is better."""
        meta = self.meta
        # The source names the set, so scores of one codec on two sets get two sections.
        scored_on = f" on {meta['source']}" if meta.get("source") else ""
        if scored_on and meta.get("split"):
            scored_on += f" ({meta['split']})"
        lines = [
            f"## Codec evaluation: {meta['codec']['codec_id']}{scored_on}",
            "",
            f"Split: {meta.get('split') or 'n/a'}; source: `{meta.get('source') or 'n/a'}`; "
            f"scored at {meta['eval_sample_rate']} Hz. Metric implementations: "
            + "; ".join(f"{k}: {v}" for k, v in meta["metric_implementations"].items())
            + ".",
            "",
        ]
        headers = ["system", "setting", "kbps (nominal)", "kbps (measured)", "n"]
        # an optional metric (ViSQOL) gets a column only where some row has it
        shown = [
            m
            for m in METRIC_NAMES
            if m not in OPTIONAL_METRICS or any(r.metrics[m]["n"] for r in self.summary)
        ]
        for name in shown:
            headers.append(f"{name} {'↑' if HIGHER_IS_BETTER[name] else '↓'}")
        with_wer = any(r.wer for r in self.summary)
        if with_wer:
            headers += ["WER % ↓", "capped WER % ↓"]
        headers += ["encode ×RT", "decode ×RT"]
        for kind in [k for k in KINDS if any(r.kind == k for r in self.summary)]:
            rows = sorted(
                (r for r in self.summary if r.kind == kind), key=lambda r: (r.measured_bps, r.system)
            )
            lines += [
                f"### {kind} ({rows[0].num_items} items)",
                "",
                "| " + " | ".join(headers) + " |",
                "|" + "---|" * len(headers),
            ]
            for r in rows:
                cells = [
                    r.system,
                    r.setting,
                    f"{r.nominal_bps / 1000:.2f}",
                    f"{r.measured_bps / 1000:.2f}",
                    str(r.num_items),
                ]
                for name in shown:
                    cells.append(_format_stat(r.metrics[name], r.num_items))
                if with_wer:
                    cells.append(_format_wer(r.wer, r.num_items))
                    cells.append(_format_wer(r.wer, r.num_items, "capped_wer", loops=True))
                cells += [f"{r.encode_x_realtime:.1f}", f"{r.decode_x_realtime:.1f}"]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
        lines.append(
            "Cells are mean (median); a `[n]` suffix counts the items where the metric was defined "
            "when it is fewer than all. ×RT: seconds of audio per wall-clock second."
        )
        if meta.get("asr"):
            asr = meta["asr"]
            original = asr.get("original_wer")
            lines += [
                "",
                f"WER: {asr['implementation']}. Corpus WER (errors / reference words) over the speech items "
                "(capped: each item's errors at most its word count; loops: items with more insertions than "
                "words, where the recogniser repeats itself) "
                f"with words: {asr['text_references']} against the manifest's text, "
                f"{asr['transcript_references']} against the recogniser's transcript of the original"
                + (
                    f"; the originals themselves score {100 * original:.1f}% against the manifest's text"
                    if original is not None
                    else ""
                )
                + (
                    f"; {asr['no_words']} item(s) without recognisable words left out"
                    if asr["no_words"]
                    else ""
                )
                + ".",
            ]
        if self.failures:
            lines += [
                "",
                f"{len(self.failures)} failure(s): "
                + "; ".join(f"{f['path']} ({f['system']}): {f['error']}" for f in self.failures[:10]),
            ]
        if meta.get("skipped_baselines"):
            lines += [
                "",
                "Skipped baselines: " + "; ".join(f"{k}: {v}" for k, v in meta["skipped_baselines"].items()),
            ]
        return "\n".join(lines) + "\n"


def _format_stat(stat: dict, num_items: int) -> str:
    if stat["mean"] is None:
        return "n/a"
    text = f"{stat['mean']:.3f} ({stat['median']:.3f})"
    return text if stat["n"] == num_items else f"{text} [{stat['n']}]"


def _format_wer(wer: dict | None, num_items: int, key: str = "wer", loops: bool = False) -> str:
    if not wer or wer[key] is None:
        return "n/a"
    text = f"{100 * wer[key]:.1f}" + (f" ({wer['loops']} loops)" if loops and wer["loops"] else "")
    return text if wer["items"] == num_items else f"{text} [{wer['items']}]"


def _json_safe(value):
    """NaN and inf become None so the JSON is standard."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def summarize(items: list[ItemResult]) -> list[SummaryRow]:
    groups: dict[tuple[str, str, str], list[ItemResult]] = {}
    for r in items:
        groups.setdefault((r.system, r.setting, r.kind), []).append(r)
    rows = []
    for (system, setting, kind), group in groups.items():
        seconds = sum(r.seconds for r in group)
        stats = {}
        for name in METRIC_NAMES:
            vals = [
                v for v in (getattr(r.metrics, name) for r in group) if v is not None and math.isfinite(v)
            ]
            stats[name] = {
                "mean": statistics.fmean(vals) if vals else None,
                "median": statistics.median(vals) if vals else None,
                "n": len(vals),
            }
        rows.append(
            SummaryRow(
                system=system,
                setting=setting,
                kind=kind,
                num_items=len(group),
                nominal_bps=group[0].nominal_bps,
                measured_bps=sum(r.measured_bps * r.seconds for r in group) / seconds,
                metrics=stats,
                encode_x_realtime=seconds / max(sum(r.encode_seconds for r in group), 1e-9),
                decode_x_realtime=seconds / max(sum(r.decode_seconds for r in group), 1e-9),
                wer=_wer_stats(group),
            )
        )
    return rows


def _wer_stats(group: list[ItemResult]) -> dict | None:
    scored = [r.wer for r in group if r.wer is not None]
    if not scored:
        return None
    words = sum(e.words for e in scored)
    return {
        "wer": corpus_wer(scored),
        # each item's errors capped at its word count: one Whisper repetition loop (hundreds of
        # insertions on one item) cannot outweigh the rest of the set
        "capped_wer": sum(min(e.errors, e.words) for e in scored) / words,
        "loops": sum(e.insertions > e.words for e in scored),  # items with more insertions than words
        "errors": sum(e.errors for e in scored),
        "words": words,
        "items": len(scored),
    }
