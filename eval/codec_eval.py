"""Codec evaluation: a neural codec at several codebook counts against classical baselines, in one run.

`evaluate_codec` loads each reference item (mono, resampled to 16 kHz), encodes and decodes it with
the codec at every requested ``num_codebooks`` and round-trips it through every baseline (Opus, Codec2:
eval/baselines.py), aligns and trims the output to the reference, and scores it with eval/metrics.py.
Results are aggregated (mean and median, NaNs left out and counted) per (system, setting, kind) in a
`CodecReport`, which writes JSON (with the metric implementations and versions, the split, nominal and
measured bitrates) and a markdown table per kind.

Speed is reported as "x real time": seconds of audio processed per wall-clock second, summed over the
items (higher is faster). The codec is warmed up once before timing; baseline times include the tools'
process start-up.

With a `VisqolScorer` (eval/visqol.py, ``pip install '.[visqol]'``), every item also gets a ViSQOL v3
MOS-LQO, and the ViSQOL column joins the tables.

With a `Transcriber` (eval/asr.py, ``pip install '.[asr]'``), speech is also transcribed by Whisper
tiny.en and scored by word error rate against the manifest's text or the original's transcript; the
WER column then joins the speech table.

Everything runs at 16 kHz (`EVAL_SR`): the reference is resampled to 16 kHz before encoding, so a codec
at another rate sees 16 kHz-band-limited input, and its output is resampled back to 16 kHz to score it.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from codec.tokens import Codec, resample
from eval.asr import Transcriber, WordErrors, corpus_wer, normalize_text, word_errors
from eval.baselines import Baseline, BaselineUnavailableError, unavailable_reason
from eval.metrics import (
    HIGHER_IS_BETTER,
    KINDS,
    METRIC_NAMES,
    METRIC_SR,
    OPTIONAL_METRICS,
    Metrics,
    compute_metrics,
    metric_implementations,
)
from eval.visqol import VisqolScorer

EVAL_SR = METRIC_SR
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


def _load(path: Path) -> torch.Tensor:
    """Mono float32 ``[S]`` at EVAL_SR (codec.audio validates the file and names it in any error)."""
    from codec.audio import load_audio

    return load_audio(path, target_sr=EVAL_SR, channel_policy="downmix").wav[0]


def _roundtrip_codec(
    codec: Codec, wav: torch.Tensor, num_codebooks: int
) -> tuple[torch.Tensor, float, float, int]:
    """Encode/decode mono ``[S]`` at EVAL_SR; returns (decoded [S'] at EVAL_SR, t_enc, t_dec, frames)."""
    with torch.inference_mode():
        start = time.perf_counter()
        tokens = codec.encode(wav[None, None], EVAL_SR, num_codebooks=num_codebooks)
        t_enc = time.perf_counter() - start
        start = time.perf_counter()
        out = codec.decode(tokens)  # [1, C, S'] at codec.sample_rate
        t_dec = time.perf_counter() - start
    decoded = resample(out[0].float().mean(dim=0), codec.sample_rate, EVAL_SR)
    return decoded, t_enc, t_dec, int(tokens.lengths[0])


def _codec_meta(codec: Codec) -> dict:
    return {
        "codec_id": codec.codec_id,
        "class": f"{type(codec).__module__}.{type(codec).__qualname__}",
        "sample_rate": codec.sample_rate,
        "channels": codec.channels,
        "frame_rate": codec.frame_rate,
        "codebook_size": codec.codebook_size,
        "num_codebooks": codec.num_codebooks,
    }


def _tool_version(cmd: list[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    text = (proc.stdout or proc.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def _baseline_meta(baselines: Sequence[Baseline]) -> dict[str, str]:
    meta = {}
    names = {b.name for b in baselines}
    if any(n.startswith("opus") for n in names):
        meta["opus"] = _tool_version(["opusenc", "--version"]) + " (opusenc --hard-cbr, 16 kHz mono)"
    if any(n.startswith("codec2") for n in names):
        meta["codec2"] = (
            "codec2 " + _tool_version(["dpkg-query", "-W", "-f=${Version}", "codec2"]) + " (8 kHz)"
        )
    return meta


def _summarize(items: list[ItemResult]) -> list[SummaryRow]:
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


def _score_words(
    transcriber: Transcriber | None, reference_text: str | None, wav: torch.Tensor
) -> WordErrors | None:
    if transcriber is None or reference_text is None:
        return None
    return word_errors(reference_text, transcriber.transcribe(wav, EVAL_SR))


def evaluate_codec(
    codec: Codec | None,
    ref_items: Sequence[tuple[str | os.PathLike, str]],
    num_codebooks_list: Sequence[int] | None = None,
    baselines: Sequence[Baseline] = (),
    *,
    split: str | None = None,
    source: str | None = None,
    crop_seconds: float | None = None,
    progress: Callable[[str], None] | None = None,
    transcriber: Transcriber | None = None,
    texts: Mapping[str, str | None] | None = None,
    visqol: VisqolScorer | None = None,
) -> CodecReport:
    """Score ``codec`` at each codebook count and each baseline on the reference items.

    ref_items: (audio path, kind) pairs, kind in ("speech", "music", "sfx").
    num_codebooks_list: codebook counts to evaluate (default: all of the codec's). ``codec=None``
    evaluates the baselines only.
    baselines: from `eval.baselines.parse_baselines`; one whose tool is missing is skipped and named in
    ``meta["skipped_baselines"]``.
    crop_seconds: score only the first this many seconds of each item.
    transcriber: score speech by Whisper WER too (eval/asr.py). The reference of an item is
    ``texts[str(path)]`` where given and the item is not cropped shorter, else the transcript of the
    original; an item whose reference has no words gets no WER (counted in ``meta["asr"]``).
    visqol: score ViSQOL too (eval/visqol.py), every kind; its column joins the tables.
    A file that cannot be loaded is recorded in ``failures`` and the run goes on.
    """
    for _, kind in ref_items:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    ks: list[int] = []
    if codec is not None:
        ks = list(num_codebooks_list) if num_codebooks_list else [codec.num_codebooks]
        bad = [k for k in ks if not 1 <= k <= codec.num_codebooks]
        if bad:
            raise ValueError(
                f"num_codebooks {bad} out of range: codec {codec.codec_id} has 1 to "
                f"{codec.num_codebooks} codebooks"
            )
    skipped = {b.name: reason for b in baselines if (reason := unavailable_reason(b))}
    runnable = [b for b in baselines if b.name not in skipped]
    meta = {
        "codec": _codec_meta(codec) if codec is not None else {"codec_id": "none (baselines only)"},
        "num_codebooks": ks,
        "baselines": [b.name for b in runnable],
        "baseline_tools": _baseline_meta(runnable),
        "skipped_baselines": skipped,
        "split": split,
        "source": source,
        "eval_sample_rate": EVAL_SR,
        "crop_seconds": crop_seconds,
        "metric_implementations": metric_implementations(visqol=visqol is not None),
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": sys.version.split()[0],
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    texts = texts or {}
    asr_meta = {"text_references": 0, "transcript_references": 0, "no_words": 0}
    original_errors: list[WordErrors] = []
    if transcriber is not None:
        meta["asr"] = {"implementation": transcriber.describe(), **asr_meta}
    report = CodecReport(meta=meta)
    if codec is not None:  # warm-up, so lazy initialisation is not timed
        _roundtrip_codec(codec, torch.zeros(EVAL_SR), ks[0])

    for index, (path, kind) in enumerate(ref_items):
        path = Path(path)
        if progress:
            progress(f"[{index + 1}/{len(ref_items)}] {path}")
        try:
            ref = _load(path)
        except ValueError as e:  # codec.audio.AudioError: a bad file is recorded, the run goes on
            report.failures.append({"path": str(path), "system": "load", "error": str(e)})
            continue
        full_length = ref.shape[0]
        if crop_seconds is not None:
            ref = ref[: int(crop_seconds * EVAL_SR)]
        seconds = ref.shape[0] / EVAL_SR
        reference_text = None
        if transcriber is not None and kind == "speech":
            reference_text = texts.get(str(path)) if ref.shape[0] == full_length else None
            if reference_text and normalize_text(reference_text):
                asr_meta["text_references"] += 1
                original_errors.append(word_errors(reference_text, transcriber.transcribe(ref, EVAL_SR)))
            else:
                reference_text = transcriber.transcribe(ref, EVAL_SR)
                if normalize_text(reference_text):
                    asr_meta["transcript_references"] += 1
                else:
                    reference_text = None
                    asr_meta["no_words"] += 1

        for k in ks:
            deg, t_enc, t_dec, frames = _roundtrip_codec(codec, ref, k)
            bits = frames * k * math.log2(codec.codebook_size)
            report.items.append(
                ItemResult(
                    path=str(path),
                    kind=kind,
                    system=codec.codec_id,
                    setting=f"K={k}",
                    seconds=seconds,
                    nominal_bps=k * math.log2(codec.codebook_size) * codec.frame_rate,
                    measured_bps=bits / seconds,
                    encode_seconds=t_enc,
                    decode_seconds=t_dec,
                    metrics=compute_metrics(ref, deg, EVAL_SR, kind, visqol),
                    wer=_score_words(transcriber, reference_text, deg),
                )
            )
        for baseline in runnable:
            try:
                result = baseline.roundtrip_with_stats(ref, EVAL_SR)
            except (BaselineUnavailableError, RuntimeError) as e:
                report.failures.append({"path": str(path), "system": baseline.name, "error": str(e)})
                continue
            report.items.append(
                ItemResult(
                    path=str(path),
                    kind=kind,
                    system=baseline.name,
                    setting=baseline.name,
                    seconds=seconds,
                    nominal_bps=baseline.bits_per_second,
                    measured_bps=result.payload_bps,
                    encode_seconds=result.encode_seconds,
                    decode_seconds=result.decode_seconds,
                    metrics=compute_metrics(ref, result.wav, EVAL_SR, kind, visqol),
                    wer=_score_words(transcriber, reference_text, result.wav),
                )
            )
    report.summary = _summarize(report.items)
    if transcriber is not None:
        meta["asr"].update(asr_meta, original_wer=corpus_wer(original_errors))
    return report


def collect_items(
    ref: str | os.PathLike,
    kind: str = "auto",
    split: str | None = "test",
    limit: int | None = None,
    sources: list[str] | None = None,
    languages: list[str] | None = None,
) -> list[tuple[Path, str]]:
    """Reference items from a corpus (a folder with manifest.jsonl, or the manifest itself) or a folder of audio.

    Manifest rows are ``{"path", "kind", "split", ...}`` with paths relative to the manifest's folder;
    rows of another ``split`` are left out (``split=None`` keeps all), and ``kind`` other than "auto" keeps
    only rows of that kind; ``sources`` keeps only rows whose ``source`` (the package) is one of them, e.g. the
    recorded music of ``0ad-data`` apart from the rendered MIDI; ``languages`` keeps only rows whose
    ``language`` is one of them or a variant of one ("en" keeps "en", "en-us" and "en_GB"). In a plain folder, ``kind`` gives every file's kind; "auto" takes it from a
    folder named speech, music or sfx on the file's path and otherwise assumes speech.
    limit: at most this many items per kind, evenly spaced through the sorted list (deterministic).
    """
    from codec.audio import iter_audio_files

    if kind != "auto" and kind not in KINDS:
        raise ValueError(f"kind must be 'auto' or one of {KINDS}, got {kind!r}")
    ref = Path(ref)
    manifest = ref / "manifest.jsonl" if ref.is_dir() else ref
    items: list[tuple[Path, str]] = []
    if manifest.is_file() and manifest.suffix == ".jsonl":
        for line_no, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                row_path, row_kind, row_split = row["path"], row["kind"], row.get("split")
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ValueError(
                    f"{manifest}:{line_no}: not a manifest row with path and kind ({e}); "
                    "rebuild the corpus with `audiotok data build`."
                ) from None
            if split is not None and row_split != split:
                continue
            if kind != "auto" and row_kind != kind:
                continue
            if sources is not None and row.get("source") not in sources:
                continue
            if languages is not None and not _language_matches(row.get("language"), languages):
                continue
            if row_kind not in KINDS:
                raise ValueError(f"{manifest}:{line_no}: kind {row_kind!r} is not one of {KINDS}.")
            items.append((manifest.parent / row_path, row_kind))
        if not items:
            raise ValueError(
                f"{manifest}: no rows with split {split!r}"
                + (f" and kind {kind!r}" if kind != "auto" else "")
                + (f" and source in {sources}" if sources is not None else "")
                + (f" and language in {languages}" if languages is not None else "")
                + "; check --split / --kind / --source / --language."
            )
    elif sources is not None or languages is not None:
        raise ValueError(
            f"{ref}: a source or language filter needs a corpus manifest (its rows name their source and "
            "language)."
        )
    elif ref.is_dir():
        for path in iter_audio_files([str(ref)]):
            if kind != "auto":
                items.append((path, kind))
                continue
            parts = set(path.relative_to(ref).parts[:-1])
            found = [k for k in KINDS if k in parts]
            items.append((path, found[0] if found else "speech"))
    else:
        raise ValueError(f"{ref}: is neither a folder of audio nor a manifest.jsonl; pass one of those.")
    items.sort(key=lambda it: str(it[0]))
    if limit is not None:
        items = _limit_per_kind(items, limit)
    return items


def _language_matches(language: str | None, wanted: list[str]) -> bool:
    """ "en" matches "en", "en-us" and "en_GB" (case-insensitive), not "eng" or "ena"."""
    if not language:
        return False
    language = language.lower()
    for w in (w.lower() for w in wanted):
        if language == w or (language.startswith(w) and language[len(w)] in "-_"):
            return True
    return False


def _limit_per_kind(items: list[tuple[Path, str]], limit: int) -> list[tuple[Path, str]]:
    out = []
    for kind in KINDS:
        group = [it for it in items if it[1] == kind]
        if len(group) > limit:
            step = len(group) / limit
            group = [group[int(i * step)] for i in range(limit)]
        out += group
    return out
