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

import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch

from codec.tokens import Codec, resample
from eval.asr import Transcriber, WordErrors, corpus_wer, normalize_text, word_errors
from eval.baselines import Baseline, BaselineUnavailableError, unavailable_reason
from eval.codec_report import CodecReport, ItemResult, summarize
from eval.metrics import (
    KINDS,
    METRIC_SR,
    compute_metrics,
    metric_implementations,
)
from eval.visqol import VisqolScorer

EVAL_SR = METRIC_SR


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
    report.summary = summarize(report.items)
    if transcriber is not None:
        meta["asr"].update(asr_meta, original_wer=corpus_wer(original_errors))
    return report
