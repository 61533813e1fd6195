"""Sound banks for the paired text-audio data (``multimodal.scenes``): labelled events with known attributes.

Every bank entry (`Sound`) is one clip from one source (a file, or one synthetic render), with its kind
(speech, music, sfx), the attributes a caption or a question can name (word, language, voice gender;
instrument, direction, register, tempo; sfx label), its license and its split. Sources:

- speech, synthetic: ``espeak-ng`` single words (24 English ones, 12 numbers and colours in each of French,
  German, Spanish, Italian), male and female voice variants, speeds and pitches; real: Tux Paint's spoken
  stamp descriptions (language from the file name, the object from the stamp name) and KLettres letters;
- music: short monotonic melodies written as MIDI here and rendered by ``fluidsynth`` with FluidR3_GM, one
  render per instrument with the melodies 4 s apart, cut afterwards (one soundfont load per instrument);
  and excerpts of the corpus's real music (0 A.D. and SuperTuxKart soundtracks, music21 chorales rendered
  with fluidsynth), named by kind of piece, not instrument: without them every piece of music the model
  ever heard would be one synthetic instrument playing one line;
- sfx: classes from file names in Debian packages (Hydrogen drum kits, Minetest, SuperTux, Wesnoth,
  Hedgewars, LMMS, Tux Paint animal stamps);
- unseen (never in the corpus): ``ktuberling`` spoken words, Neverball's soundtrack and its game sounds.

Split of a source: the corpus manifest's split when the corpus used that file (so the token LM never saw
test audio), else a stable hash of the source id (80/7/13 % train/valid/test).
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from codec.audio import AudioError, read_audio
from codec.data.sources import TUXPAINT_STAMPS, file_license, klettres_jobs, package_license

SAMPLE_RATE = 16000
SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"

LANGUAGES = {
    "en": "English", "fr": "French", "de": "German", "es": "Spanish", "it": "Italian", "bg": "Bulgarian",
    "ru": "Russian", "ro": "Romanian", "ca": "Catalan", "be": "Belarusian", "el": "Greek", "da": "Danish",
    "lt": "Lithuanian", "nl": "Dutch", "cs": "Czech", "hu": "Hungarian", "nb": "Norwegian", "nn": "Norwegian",
    "pt": "Portuguese", "uk": "Ukrainian", "fi": "Finnish", "ga": "Irish", "gl": "Galician", "sl": "Slovenian",
    "sv": "Swedish", "nds": "Low German", "wa": "Walloon", "sr": "Serbian",
}  # fmt: skip


@dataclass
class Sound:
    """One bank entry: mono float32 audio at 16 kHz with what is known about it."""

    kind: str  # speech | music | sfx
    source_id: str
    license: str
    attrs: dict  # word, language, gender, topic, letter; instrument, direction, register, tempo; label
    audio: np.ndarray = field(repr=False)
    split: str = "train"

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE


# ----------------------------------------------------------------------------------------------------------
# Audio helpers


def trim_silence(wav: np.ndarray, threshold_db: float = -40.0, pad: float = 0.02) -> np.ndarray:
    """``wav`` without leading and trailing stretches quieter than ``threshold_db`` below its peak."""
    peak = float(np.abs(wav).max()) if len(wav) else 0.0
    if peak < 1e-5:
        return wav[:0]
    frame = 160  # 10 ms
    n = len(wav) // frame
    if n == 0:
        return wav
    rms = np.sqrt(np.mean(wav[: n * frame].reshape(n, frame) ** 2, axis=1))  # (n,)
    loud = np.flatnonzero(rms > peak * 10 ** (threshold_db / 20))
    if len(loud) == 0:
        return wav[:0]
    p = int(pad * SAMPLE_RATE)
    return wav[max(0, loud[0] * frame - p) : min(len(wav), (loud[-1] + 1) * frame + p)]


def cap_length(wav: np.ndarray, seconds: float, fade: float = 0.05) -> np.ndarray:
    """At most ``seconds`` long, faded out over the last ``fade`` seconds when cut."""
    limit = int(seconds * SAMPLE_RATE)
    if len(wav) <= limit:
        return wav
    out = wav[:limit].copy()
    f = int(fade * SAMPLE_RATE)
    out[-f:] *= np.linspace(1.0, 0.0, f, dtype=np.float32)
    return out


def load_clip(path: str | Path, max_seconds: float | None = None) -> np.ndarray | None:
    """A file as trimmed mono float32 at 16 kHz (capped to ``max_seconds``); None when unreadable or silent."""
    try:
        wav = read_audio(path, SAMPLE_RATE)[0][0]
    except (AudioError, OSError, RuntimeError):
        return None
    wav = trim_silence(wav)
    if len(wav) < 0.08 * SAMPLE_RATE:
        return None
    return cap_length(wav, max_seconds) if max_seconds else wav


def stable_split(source_id: str) -> str:
    """train / valid / test by a hash of the source id: 80 / 7 / 13 %."""
    h = int(hashlib.sha256(source_id.encode()).hexdigest()[:8], 16) % 100
    return "train" if h < 80 else "valid" if h < 87 else "test"


def corpus_splits(manifest: Path) -> dict[str, str]:
    """source_id -> split of every source the corpus (and so the pretrained token LM) used."""
    out: dict[str, str] = {}
    if manifest.is_file():
        for line in manifest.read_text().splitlines():
            row = json.loads(line)
            if row.get("source_id") and row.get("split") in ("train", "valid", "test"):
                out.setdefault(row["source_id"], row["split"])
    return out


def _license(package: str, path: str) -> str:
    if path.startswith(TUXPAINT_STAMPS):
        return package_license(package)
    return file_license(package, path) or package_license(package)


# ----------------------------------------------------------------------------------------------------------
# Speech


ENGLISH_WORDS = ["dog", "apple", "river", "seven", "house", "water", "green", "music", "table", "window",
                 "garden", "yellow", "three", "bread", "mountain", "coffee", "paper", "orange", "happy",
                 "morning", "flower", "chair", "ocean", "winter"]  # fmt: skip
FOREIGN_WORDS = {
    "fr": ["un", "deux", "trois", "quatre", "cinq", "six", "rouge", "bleu", "vert", "blanc", "noir", "jaune"],
    "de": ["eins", "zwei", "drei", "vier", "fünf", "sechs", "rot", "blau", "grün", "weiß", "schwarz", "gelb"],
    "es": ["uno", "dos", "tres", "cuatro", "cinco", "seis", "rojo", "azul", "verde", "blanco", "negro", "amarillo"],
    "it": ["uno", "due", "tre", "quattro", "cinque", "sei", "rosso", "blu", "verde", "bianco", "nero", "giallo"],
}  # fmt: skip
VOICES = {"m1": "male", "m2": "male", "m3": "male", "m4": "male",
          "f1": "female", "f2": "female", "f3": "female", "f4": "female"}  # fmt: skip


def espeak_plan(seed: int = 0) -> list[dict]:
    """(word, language, voice variant, speed, pitch) of every espeak render: two per English word and voice."""
    rng = np.random.default_rng(seed)
    plan = []
    for lang, words, renders in [("en", ENGLISH_WORDS, 2)] + [(k, v, 1) for k, v in FOREIGN_WORDS.items()]:
        for word in words:
            for variant in VOICES:
                for _ in range(renders):
                    speed, pitch = int(rng.integers(120, 191)), int(rng.integers(30, 71))
                    plan.append(
                        {"word": word, "language": lang, "variant": variant, "speed": speed, "pitch": pitch}
                    )
    return plan


def _espeak_render(item: dict, cache: Path) -> tuple[dict, np.ndarray | None]:
    sid = f"espeak:{item['language']}+{item['variant']}:s{item['speed']}:p{item['pitch']}:{item['word']}"
    path = cache / (hashlib.sha1(sid.encode()).hexdigest()[:16] + ".wav")
    if not path.is_file():
        tmp = path.with_suffix(".tmp.wav")
        cmd = ["espeak-ng", "-v", f"{item['language']}+{item['variant']}", "-s", str(item["speed"]),
               "-p", str(item["pitch"]), "-w", str(tmp), item["word"]]  # fmt: skip
        if subprocess.run(cmd, capture_output=True, check=False).returncode != 0:
            return {**item, "source_id": sid}, None
        tmp.rename(path)
    return {**item, "source_id": sid}, load_clip(path, 2.5)


def espeak_bank(cache: Path, seed: int = 0, workers: int = 2) -> list[Sound]:
    cache.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(workers) as pool:
        done = list(pool.map(lambda it: _espeak_render(it, cache), espeak_plan(seed)))
    return [
        Sound("speech", it["source_id"], package_license("espeak-ng"),
              {"word": it["word"], "language": it["language"], "gender": VOICES[it["variant"]]}, wav)
        for it, wav in done if wav is not None
    ]  # fmt: skip


def tuxpaint_speech_bank(per_language: int = 120) -> list[Sound]:
    """Spoken stamp descriptions: language from the file name, the described object from the stamp name."""
    by_lang: dict[str, list[Path]] = {}
    for path in sorted(Path(TUXPAINT_STAMPS).rglob("*_desc*.ogg")) if Path(TUXPAINT_STAMPS).is_dir() else []:
        m = re.match(r"^(.*)_desc(?:_([A-Za-z]+))?$", path.stem)
        lang = (m.group(2) or "en") if m else None
        if lang in LANGUAGES:
            by_lang.setdefault(lang, []).append(path)
    out = []
    for lang, paths in sorted(by_lang.items()):
        for path in paths[:: max(1, len(paths) // per_language)][:per_language]:
            wav = load_clip(path)
            if wav is not None and len(wav) <= 5.0 * SAMPLE_RATE:
                topic = re.sub(r"_desc.*$", "", path.stem).replace("_", " ")
                topic = re.sub(r"\s*\d+$", "", topic)
                out.append(Sound("speech", str(path), package_license("tuxpaint-stamps-default"),
                                 {"language": lang, "topic": topic}, wav))  # fmt: skip
    return out


def klettres_bank(per_language: int = 30) -> list[Sound]:
    """KLettres letters (the ``alpha`` folders; single Latin letters only)."""
    out, count = [], {}
    for job in klettres_jobs():
        lang = job["language"].split("_")[0]
        text = (job.get("text") or "").strip()
        if "/alpha/" not in job["input"] or lang not in LANGUAGES or not re.fullmatch(r"[A-Za-z]", text):
            continue
        if count.get(lang, 0) >= per_language:
            continue
        wav = load_clip(job["input"], 2.5)
        if wav is not None:
            count[lang] = count.get(lang, 0) + 1
            out.append(Sound("speech", job["source_id"], job["license"],
                             {"language": lang, "letter": text.upper()}, wav))  # fmt: skip
    return out


# ----------------------------------------------------------------------------------------------------------
# Music: MIDI written here, rendered by fluidsynth


INSTRUMENTS = {"piano": 0, "xylophone": 13, "organ": 19, "guitar": 24, "violin": 40, "cello": 42,
               "trumpet": 56, "flute": 73}  # fmt: skip
MAJOR = [0, 2, 4, 5, 7, 9, 11]
MELODY_SPACING = 4.0  # seconds between melody starts in one instrument's render


def melody_plan(num: int, rng: np.random.Generator) -> list[dict]:
    """``num`` melodies covering every (direction, register, tempo) evenly: MIDI pitches and note length."""
    out = []
    for i in range(num):
        direction = ["rising", "falling"][i % 2]
        register = ["low", "high"][(i // 2) % 2]
        tempo = ["slow", "fast"][(i // 4) % 2]
        n = int(rng.integers(4, 7)) if tempo == "slow" else int(rng.integers(6, 9))
        note = float(rng.uniform(0.32, 0.42)) if tempo == "slow" else float(rng.uniform(0.15, 0.2))
        root = int(rng.choice([45, 48, 50])) if register == "low" else int(rng.choice([69, 72, 74]))
        degrees = np.cumsum(rng.integers(1, 3, size=n - 1))  # strictly increasing scale degrees
        degrees = np.concatenate([[0], degrees])
        pitches = [root + 12 * (d // 7) + MAJOR[d % 7] for d in degrees]
        if direction == "falling":
            top = pitches[-1]
            pitches = [top - (p - root) for p in pitches]
        out.append({"pitches": [int(p) for p in pitches], "note": round(note, 3), "direction": direction,
                    "register": register, "tempo": tempo})  # fmt: skip
    return out


def _varlen(n: int) -> bytes:
    out = [n & 0x7F]
    while n > 0x7F:
        n >>= 7
        out.insert(0, (n & 0x7F) | 0x80)
    return bytes(out)


def midi_bytes(program: int, melodies: list[dict], spacing: float = MELODY_SPACING) -> bytes:
    """A format-0 MIDI file: ``melodies`` one after another, ``spacing`` s apart (120 bpm, 480 ticks/beat)."""
    tick = 960  # ticks per second at 120 bpm
    events: list[tuple[int, bytes]] = []
    for k, mel in enumerate(melodies):
        t0 = k * spacing
        for j, p in enumerate(mel["pitches"]):
            on = round((t0 + j * mel["note"]) * tick)
            off = round((t0 + (j + 1) * mel["note"]) * tick) - 10
            events += [(on, bytes([0x90, p, 96])), (off, bytes([0x80, p, 0]))]
    events.sort(key=lambda e: (e[0], e[1][0] == 0x90))
    track = b"\x00\xff\x51\x03\x07\xa1\x20" + b"\x00" + bytes([0xC0, program])
    now = 0
    for t, msg in events:
        track += _varlen(t - now) + msg
        now = t
    track += b"\x00\xff\x2f\x00"
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, 480) + b"MTrk" + struct.pack(">I", len(track)) + track


def music_bank(cache: Path, per_instrument: int = 40, seed: int = 0) -> list[Sound]:
    """``per_instrument`` melodies for each of INSTRUMENTS, rendered once and cached as one wav each."""
    cache.mkdir(parents=True, exist_ok=True)
    license_ = f"{package_license('fluid-soundfont-gm')} (FluidR3_GM soundfont); melodies generated"
    out = []
    for name, program in INSTRUMENTS.items():
        rng = np.random.default_rng([seed, program])
        melodies = melody_plan(per_instrument, rng)
        path = cache / f"{name}.wav"
        if not path.is_file():
            with tempfile.TemporaryDirectory() as tmp:
                mid, wav = Path(tmp) / "m.mid", Path(tmp) / "m.wav"
                mid.write_bytes(midi_bytes(program, melodies))
                cmd = [
                    "fluidsynth",
                    "-ni",
                    "-g",
                    "1.0",
                    "-r",
                    str(SAMPLE_RATE),
                    "-F",
                    str(wav),
                    SOUNDFONT,
                    str(mid),
                ]
                subprocess.run(cmd, capture_output=True, check=False)
                if not wav.is_file():
                    continue
                sf.write(path, read_audio(wav, SAMPLE_RATE)[0][0], SAMPLE_RATE, subtype="PCM_16")
        render = sf.read(path, dtype="float32")[0]
        for k, mel in enumerate(melodies):
            start = int(k * MELODY_SPACING * SAMPLE_RATE)
            end = start + int((len(mel["pitches"]) * mel["note"] + 0.4) * SAMPLE_RATE)
            clip = cap_length(trim_silence(render[start:end]), 3.0)
            if len(clip) > 0.5 * SAMPLE_RATE:
                attrs = {"instrument": name, **{k2: mel[k2] for k2 in ("direction", "register", "tempo")}}
                out.append(Sound("music", f"fluidsynth:{name}:melody{k}", license_, attrs, clip))
    return out


# Corpus music: stage -> what a caption calls the piece
CORPUS_MUSIC = {"0ad-music": "soundtrack", "stk-music": "soundtrack", "music21": "chorale"}


def corpus_music_bank(manifest: Path, seconds: float = 3.0, per_stage: int = 400) -> list[Sound]:
    """One ``seconds`` excerpt of each of at most ``per_stage`` music segments per corpus stage (at an offset
    given by a hash of the segment), attrs ``{"piece": soundtrack | chorale}``, under its song's source id
    (so it keeps the corpus's split); none when the corpus is not built."""
    if not manifest.is_file():
        return []
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    out: list[Sound] = []
    for stage, piece in CORPUS_MUSIC.items():
        mine = sorted(
            (r for r in rows if r.get("kind") == "music" and r.get("stage") == stage), key=lambda r: r["path"]
        )
        step = max(1, len(mine) // per_stage)
        n = int(seconds * SAMPLE_RATE)
        for r in mine[::step][:per_stage]:
            try:
                wav = read_audio(manifest.parent / r["path"], SAMPLE_RATE)[0][0]
            except (AudioError, OSError, RuntimeError):
                continue
            if len(wav) < n:
                continue
            h = int(hashlib.sha256(r["path"].encode()).hexdigest()[:8], 16)
            start = h % (len(wav) - n + 1)
            clip = wav[start : start + n]
            if rms(clip) > 10 ** (-45 / 20):  # not silent
                out.append(Sound("music", r["source_id"], r["license"], {"piece": piece}, clip.copy()))
    return out


def rms(x: np.ndarray) -> float:
    """Root mean square of a clip (0 for an empty one)."""
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if len(x) else 0.0


# ----------------------------------------------------------------------------------------------------------
# Sound effects: classes from file names

# (label, folder, file-name regex): first match wins; at most SFX_PER_CLASS files per class.
DRUMS = "/usr/share/hydrogen/data/drumkits"
GAMES = "/usr/share/games"
SFX_RULES = [
    ("kick drum", DRUMS, r"kick"),
    ("snare drum", DRUMS, r"snare"),
    ("hi-hat", DRUMS, r"hi-?hat|(^|[^a-z])hat"),
    ("cymbal", DRUMS, r"crash|ride(?!bell)|china|cymbal|splash"),
    ("tom drum", DRUMS, r"(^|[^a-z])tom"),
    ("hand clap", DRUMS, r"clap"),
    ("footsteps", f"{GAMES}/minetest", r"_footstep"),
    ("door", GAMES, r"doors?_(?!.*glass).*(door|fencegate)|/door\.wav"),
    ("glass breaking", GAMES, r"break_glass|shatter|icecrash"),
    ("explosion", GAMES, r"explo"),
    ("explosion", "/usr/share/lmms/samples", r"explode"),
    ("splash", GAMES, r"splash"),
    ("laughter", GAMES, r"laugh"),
    ("bell", GAMES, r"bell"),
    ("bell", DRUMS, r"paistebell|bell hit"),
    ("bird", f"{TUXPAINT_STAMPS}/animals/birds", r"."),
    ("insect", f"{TUXPAINT_STAMPS}/animals/insects", r"."),
    ("cow", TUXPAINT_STAMPS, r"/(cow|cow_white|bull|bison)\.ogg"),
    ("cow", f"{GAMES}/supertuxkart", r"/cow\.ogg"),
    ("horse", f"{GAMES}/wesnoth", r"horse-(hit|die|canter)"),
    ("horse", TUXPAINT_STAMPS, r"/(horse|donkey)\.ogg"),
]
SFX_PER_CLASS = 40
PACKAGES = [("/usr/share/hydrogen", "hydrogen-drumkits"), (f"{GAMES}/minetest", "minetest-data"),
            (f"{GAMES}/supertuxkart", "supertuxkart-data"), (f"{GAMES}/supertux2", "supertux-data"),
            (f"{GAMES}/wesnoth", "wesnoth-1.16-data"), (f"{GAMES}/hedgewars", "hedgewars-data"),
            (f"{GAMES}/pingus", "pingus-data"), ("/usr/share/lmms", "lmms-common"),
            (TUXPAINT_STAMPS, "tuxpaint-stamps-default"), (f"{GAMES}/neverball", "neverball-data"),
            ("/usr/share/ktuberling", "ktuberling-data")]  # fmt: skip
AUDIO = (".ogg", ".wav", ".flac")


def package_of(path: str) -> str:
    return next((pkg for prefix, pkg in PACKAGES if path.startswith(prefix)), "unknown")


def sfx_files() -> dict[str, list[str]]:
    """label -> file paths (sorted, thinned evenly to SFX_PER_CLASS)."""
    found: dict[str, list[str]] = {}
    taken: set[str] = set()
    listings: dict[str, list[str]] = {}
    for label, root, pattern in SFX_RULES:
        if root not in listings:
            listings[root] = sorted(
                str(p) for p in Path(root).rglob("*") if p.suffix.lower() in AUDIO and "_desc" not in p.name
            ) if Path(root).is_dir() else []  # fmt: skip
        for path in listings[root]:
            if path not in taken and re.search(pattern, path[len(root) :].lower()):
                found.setdefault(label, []).append(path)
                taken.add(path)
    return {k: v[:: max(1, len(v) // SFX_PER_CLASS)][:SFX_PER_CLASS] for k, v in found.items()}


def sfx_bank() -> list[Sound]:
    out = []
    for label, paths in sfx_files().items():
        for path in paths:
            wav = load_clip(path, 2.5)
            if wav is not None:
                out.append(Sound("sfx", path, _license(package_of(path), path), {"label": label}, wav))
    return out


# ----------------------------------------------------------------------------------------------------------
# Unseen: recordings no corpus source contains

KTUBERLING = Path("/usr/share/ktuberling/sounds")
NEVERBALL = Path(f"{GAMES}/neverball")
# Neverball's spoken announcements among its game sounds (snd/*.ogg), with what they say. Whisper tiny.en
# (eval/asr.py) transcribes words in each of these 20 ("Birdie.", "Double bogey.", "Player four.", "Time's
# up.", ...) and nothing in the other 14 (ball, bink, bump, bumpbig, bumplil, coin, goal, grow, jump, menu,
# shrink, switch, tick, tock; goal.ogg is a jingle, no-speech probability 0.81). They are speech, not sound
# effects: until 2026-12-07 the unseen split called them sound effects and answered "no" to "is there
# speech?" for clips that hold them.
NEVERBALL_VOICE = {
    "birdie": "birdie", "bogey": "bogey", "double": "double bogey", "eagle": "eagle", "fall": "fall-out",
    "go": "go", "one": "one", "over": "game over", "par": "par", "penalty": "penalty",
    "player1": "player one", "player2": "player two", "player3": "player three", "player4": "player four",
    "ready": "ready", "record": "new record", "select": "select", "set": "set", "success": "success",
    "time": "time's up",
}  # fmt: skip


def ktuberling_bank() -> list[Sound]:
    """Spoken words of KTuberling in every language it ships (the English words are known)."""
    out = []
    for theme in sorted(KTUBERLING.glob("*.soundtheme")) if KTUBERLING.is_dir() else []:
        lang = theme.stem
        if lang not in LANGUAGES:
            continue
        try:
            root = ET.parse(theme).getroot()
        except ET.ParseError:
            continue
        for snd in root.iter("sound"):
            path = KTUBERLING / (snd.get("file") or "")
            wav = load_clip(path, 2.5) if path.is_file() else None
            if wav is not None:
                attrs = {"language": lang}
                if lang == "en":
                    attrs["word"] = (snd.get("name") or "").split("_")[-1]
                out.append(
                    Sound("speech", str(path), package_license("ktuberling-data"), attrs, wav, "unseen")
                )
    return out


def neverball_bank(excerpts: int = 10, seconds: float = 2.5) -> list[Sound]:
    """Neverball's soundtrack cut into excerpts (music, no labels), its spoken announcements (English speech,
    `NEVERBALL_VOICE`) and its other game sounds (sfx, no labels)."""
    out = []
    license_ = package_license("neverball-data")
    for path in sorted((NEVERBALL / "bgm").glob("*.ogg")):
        try:
            track = read_audio(path, SAMPLE_RATE)[0][0]
        except AudioError:
            continue
        for k in range(excerpts):
            start = int((5 + 9 * k) * SAMPLE_RATE)
            clip = track[start : start + int(seconds * SAMPLE_RATE)]
            if len(clip) == int(seconds * SAMPLE_RATE) and np.abs(clip).max() > 0.01:
                out.append(Sound("music", f"{path}:{5 + 9 * k}s", license_, {}, clip.copy(), "unseen"))
    for path in sorted((NEVERBALL / "snd").glob("*.ogg")):
        wav = load_clip(path, 2.5)
        if wav is not None:
            kind, attrs = ("speech", {"language": "en"}) if path.stem in NEVERBALL_VOICE else ("sfx", {})
            out.append(Sound(kind, str(path), license_, attrs, wav, "unseen"))
    return out


def build_banks(cache: Path, manifest: Path, seed: int = 0, log=print) -> list[Sound]:
    """Every bank entry with its split (``unseen`` ones last)."""
    splits = corpus_splits(manifest)
    parts = [("espeak", lambda: espeak_bank(cache / "espeak", seed)), ("music", lambda: music_bank(cache / "music", seed=seed)),
             ("corpus-music", lambda: corpus_music_bank(manifest)),
             ("tuxpaint", tuxpaint_speech_bank), ("klettres", klettres_bank), ("sfx", sfx_bank)]  # fmt: skip
    bank: list[Sound] = []
    for name, make in parts:
        got = make()
        for s in got:
            s.split = splits.get(s.source_id) or stable_split(s.source_id)
        log(f"bank {name}: {len(got)} entries")
        bank += got
    for name, make in [("ktuberling", ktuberling_bank), ("neverball", neverball_bank)]:
        got = make()
        log(f"bank {name} (unseen): {len(got)} entries")
        bank += got
    return bank
