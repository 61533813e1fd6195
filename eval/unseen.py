"""Speech test sets the codec never trained on: real human voices from Debian packages.

- ``ktuberling`` (``ktuberling-data``): KDE's stamp toy names its stamps aloud, about 1,400 short
  recordings of single words by volunteers in 15 languages (GPL-2+), recorded on their own equipment at
  22.05 or 44.1 kHz. No source of the training corpus comes from it.
- ``fillets-nl`` (``fillets-ng-data-nl``): the Dutch dub of the game Fish Fillets NG, about 1,500 lines
  of acted dialogue, whole sentences (GPL-2). The corpus trains on the Czech and English lines of the
  same game (other actors, other languages), never on the Dutch ones: the check for sentence-length,
  conversational speech.
- ``warzone`` (``warzone2100-data``): the English voice lines of the strategy game Warzone 2100: the
  tutorial's spoken instructions, the commander's status reports, mission messages and countdowns
  (GPL-2+), read by voice actors and shipped at 11.025 kHz, so band-limited to 5.5 kHz like much archive
  speech. They sit inside the game's ``base.wz`` zip; the voice folders are unpacked next to the set.

Each item is one group's recordings (a ktuberling language; a Fish Fillets level), in natural sort
order, joined with short pauses until it is at least ``seconds`` long: long enough for PESQ and STOI.
Identical recordings (some language variants ship the same files) are used once.

    python -m eval.unseen --out data/unseen                                  # ktuberling
    python -m eval.unseen --set fillets-nl --out data/unseen-fillets
    python -m eval.unseen --set warzone --out data/unseen-warzone            # then: audiotok eval codec DIR
    python -m eval.unseen --bandlimit 11025 --out data/unseen-lp             # ktuberling, nothing above 5.5 kHz
    python -m eval.unseen --background neverball-music --snr 10 --out data/unseen-music  # speech over music

``--background``: every item gets a stretch of other audio mixed under it, ``--snr`` dB below the speech
(RMS over the whole item): speech as people record it, over music or noise. The codec is judged on how
well it reproduces the mixture. ``neverball-music`` is the soundtrack of Neverball (``neverball-data``,
GPL-2+), which no corpus source contains.
"""

from __future__ import annotations

import argparse
import json
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from codec.data.sources import FILLETS  # the corpus trains on the cs/en dubs of the same game


def natural_key(path: Path) -> list:
    """help2 before help10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _recordings(folder: Path, key: Callable[[Path], object]) -> list[Path]:
    return sorted(list(folder.glob("*.ogg")) + list(folder.glob("*.wav")), key=key)


def ktuberling_groups(source: Path) -> dict[str, tuple[str, list[Path]]]:
    """Language folder -> (language, recordings by name)."""
    return {
        p.name: (p.name, _recordings(p, lambda f: f.name)) for p in sorted(source.iterdir()) if p.is_dir()
    }


def fillets_groups(source: Path) -> dict[str, tuple[str, list[Path]]]:
    """Level -> ("nl", its Dutch lines in dialogue order: help2 before help10)."""
    return {
        p.parent.name: ("nl", _recordings(p, natural_key)) for p in sorted(source.glob("*/nl")) if p.is_dir()
    }


WARZONE_VOICES = ("tutorial", "memressp", "extra", "countdown", "proxmessages", "vtoltalk", "trnsppil")


def warzone_unpack(archive: Path, dest: Path) -> Path:
    """Copy the voice recordings (``audio/<voice folder>/**.ogg``) out of Warzone 2100's ``base.wz`` zip."""
    with zipfile.ZipFile(archive) as z:
        for name in z.namelist():
            parts = name.split("/")
            if (
                len(parts) >= 3
                and parts[0] == "audio"
                and parts[1] in WARZONE_VOICES
                and name.endswith(".ogg")
            ):
                target = dest / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(z.read(name))
    return dest


def warzone_groups(source: Path) -> dict[str, tuple[str, list[Path]]]:
    """Voice folder (``tutorial``; ``memressp-research`` for a subfolder) -> ("en", its lines: tut2 before tut10)."""
    groups = {}
    for folder in sorted(p for p in (source / "audio").rglob("*") if p.is_dir()):
        recordings = _recordings(folder, natural_key)
        if recordings:
            groups["-".join(folder.relative_to(source / "audio").parts)] = ("en", recordings)
    return groups


@dataclass(frozen=True)
class UnseenSet:
    package: str
    license: str
    source: Path  # where the package installs its recordings
    groups: Callable[[Path], dict[str, tuple[str, list[Path]]]]  # group -> (language, recordings in order)
    per_group: int  # default cap on items per group
    unpack: Callable[[Path, Path], Path] | None = None  # archive, folder -> the unpacked recordings folder

    @property
    def install_hint(self) -> str:
        return f"install it with `apt-get install {self.package}` (as root) or pass --source"


SETS = {
    "ktuberling": UnseenSet(
        "ktuberling-data", "GPL-2+", Path("/usr/share/ktuberling/sounds"), ktuberling_groups, 4
    ),
    "fillets-nl": UnseenSet("fillets-ng-data-nl", "GPL-2", Path(FILLETS) / "sound", fillets_groups, 2),
    "warzone": UnseenSet(
        "warzone2100-data",
        "GPL-2+",
        Path("/usr/share/games/warzone2100/base.wz"),
        warzone_groups,
        8,
        warzone_unpack,
    ),
}


@dataclass(frozen=True)
class Background:
    package: str
    license: str
    folder: Path  # its recordings (*.ogg, *.wav), joined in name order into one long track


BACKGROUNDS = {
    "neverball-music": Background("neverball-data", "GPL-2+", Path("/usr/share/games/neverball/bgm")),
}
# Items start this far apart in the background track (wrapping around), so neighbours hear other music.
BACKGROUND_STRIDE_SECONDS = 17.3


def background_track(folder: Path, sample_rate: int, install_hint: str) -> np.ndarray:
    """Every recording in ``folder``, each scaled to unit RMS, end to end."""
    from codec.audio import load_audio

    paths = _recordings(folder, natural_key) if folder.is_dir() else []
    if not paths:
        raise FileNotFoundError(f"{folder}: no background recordings (*.ogg, *.wav); {install_hint}")
    wavs = [load_audio(p, target_sr=sample_rate).wav[0].numpy() for p in paths]
    return np.concatenate([w / max(float(np.sqrt(np.mean(w**2))), 1e-6) for w in wavs]).astype(np.float32)


def build_unseen(
    out: str | Path,
    source: str | Path | None = None,
    sample_rate: int = 16000,
    seconds: float = 6.0,
    per_group: int | None = None,
    pause: float = 0.25,
    which: str = "ktuberling",
    bandlimit: int | None = None,
    background: str | None = None,
    snr_db: float = 10.0,
    background_source: str | Path | None = None,
) -> list[dict]:
    """Write ``out/<group>-<n>.wav`` and ``out/manifest.jsonl`` for the set ``which``; returns the rows.

    ``bandlimit``: a narrowband version of the set, every recording resampled to that rate and back (e.g.
    11025: nothing above 5.5 kHz), to see what band-limited input does to a codec against the baselines.
    ``background``: a name in BACKGROUNDS; each item gets a stretch of it mixed under it ``snr_db`` dB
    below (``background_source``: its recordings folder, if not where Debian installs it).
    """
    from codec.audio import AudioError, load_audio, sha256_file
    from codec.data.decode import band_limit, mix_at_snr

    if bandlimit is not None and not 0 < bandlimit < sample_rate:
        raise ValueError(f"bandlimit must be a rate below {sample_rate} Hz, got {bandlimit}")
    track = None
    if background is not None:
        if background not in BACKGROUNDS:
            raise ValueError(f"unknown background {background!r}; known: {sorted(BACKGROUNDS)}")
        bg = BACKGROUNDS[background]
        hint = f"install it with `apt-get install {bg.package}` (as root) or pass --background-source"
        track = background_track(Path(background_source or bg.folder), sample_rate, hint)

    spec = SETS[which]
    source, out = Path(source or spec.source), Path(out)
    per_group = per_group or spec.per_group
    if spec.unpack is not None and zipfile.is_zipfile(source):
        source = spec.unpack(source, out / ".source")
    groups = {g: v for g, v in spec.groups(source).items() if v[1]} if source.is_dir() else {}
    if not groups:
        raise FileNotFoundError(f"{source}: no folders of recordings; {spec.install_hint}")
    out.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    rows: list[dict] = []
    gap = np.zeros(int(pause * sample_rate), dtype=np.float32)
    for group, (language, paths) in groups.items():
        digests = {p: sha256_file(p) for p in paths}
        kept = {d: p for p, d in digests.items()}  # one file per content (the last of equal ones)
        fresh = [p for p in paths if kept[digests[p]] == p and digests[p] not in seen]
        seen.update(kept)
        words, names, length, n = [], [], 0, 0
        for path in fresh:
            try:
                wav = load_audio(path, target_sr=sample_rate).wav[0].numpy()
                if bandlimit is not None:
                    wav = band_limit(wav, sample_rate, bandlimit)
            except AudioError as e:  # e.g. an empty line in fillets-ng-data-nl: the item goes on without it
                print(f"skipped {e}")
                continue
            words += [wav, gap]
            names.append(path)
            length += len(wav) + len(gap)
            if length - len(gap) >= seconds * sample_rate:
                name = f"{group}-{n}.wav"
                audio = np.concatenate(words[:-1])
                mixed = {}
                if track is not None:
                    offset = round(len(rows) * BACKGROUND_STRIDE_SECONDS * sample_rate) % len(track)
                    under = np.take(track, np.arange(offset, offset + len(audio)), mode="wrap")
                    audio = mix_at_snr(audio, under, snr_db)
                    audio = audio * min(1.0, 0.99 / max(float(np.abs(audio).max()), 1e-6))  # no clipping
                    mixed = {
                        "background": {
                            "name": background,
                            "source": bg.package,
                            "license": bg.license,
                            "snr_db": snr_db,
                            "offset_seconds": round(offset / sample_rate, 3),
                        }
                    }
                sf.write(out / name, audio, sample_rate, subtype="PCM_16")
                rows.append(
                    {
                        "path": name,
                        "kind": "speech",
                        "split": "test",
                        "source": spec.package,
                        "license": spec.license,
                        "language": language,
                        "seconds": round(len(audio) / sample_rate, 3),
                        **({"bandlimit": bandlimit} if bandlimit is not None else {}),
                        **mixed,
                        "original": [
                            f"{path.parent.relative_to(source).as_posix()}/{path.name}" for path in names
                        ],
                    }
                )
                words, names, length, n = [], [], 0, n + 1
                if n == per_group:
                    break
    if not rows:
        raise ValueError(f"{source}: no group has {seconds:g} s of recordings")
    (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="which", choices=sorted(SETS), default="ktuberling")
    parser.add_argument("--out", default="data/unseen", help="folder to write (default: data/unseen)")
    parser.add_argument(
        "--source",
        help="the package's recordings folder, or its archive (default: where Debian installs it)",
    )
    parser.add_argument("--seconds", type=float, default=6.0, help="minimum length of an item")
    parser.add_argument("--per-group", type=int, help="at most this many items per language or level")
    parser.add_argument(
        "--bandlimit", type=int, help="narrowband version: resample every recording to this rate and back"
    )
    parser.add_argument(
        "--background", choices=sorted(BACKGROUNDS), help="mix a stretch of this audio under every item"
    )
    parser.add_argument("--snr", type=float, default=10.0, help="speech over background, dB (default 10)")
    parser.add_argument("--background-source", help="the background's recordings folder")
    args = parser.parse_args(argv)
    rows = build_unseen(
        args.out,
        args.source,
        seconds=args.seconds,
        per_group=args.per_group,
        which=args.which,
        bandlimit=args.bandlimit,
        background=args.background,
        snr_db=args.snr,
        background_source=args.background_source,
    )
    groups = sorted({r["path"].rsplit("-", 1)[0] for r in rows})
    print(
        f"{len(rows)} items ({sum(r['seconds'] for r in rows):.0f} s) from {len(groups)} groups -> {args.out}"
    )


if __name__ == "__main__":
    main()
