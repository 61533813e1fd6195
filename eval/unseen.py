"""A speech test set the codec never trained on: real human voices from Debian ``ktuberling-data``.

KTuberling (KDE's stamp toy) names its stamps aloud: about 1,400 short recordings of single words by
volunteers in 15 languages (GPL-2+), recorded on their own equipment at 22.05 or 44.1 kHz. No source
of the training corpus (``audiotok data build``) comes from it, so it checks whether the codec's figures
on the corpus test split carry over to recordings, speakers and rooms it has not seen.

Each item is one language's words, in sorted order, joined with short pauses until it is at least
``seconds`` long: one speaker per item, long enough for PESQ and STOI. Identical recordings (some
language variants ship the same files) are used once.

    python -m eval.unseen --out data/unseen    # then: audiotok eval codec data/unseen
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import soundfile as sf

KTUBERLING = Path("/usr/share/ktuberling/sounds")
INSTALL_HINT = "install it with `apt-get install ktuberling-data` (as root) or pass --source"


def build_unseen(
    out: str | Path,
    source: str | Path = KTUBERLING,
    sample_rate: int = 16000,
    seconds: float = 6.0,
    per_language: int = 4,
    pause: float = 0.25,
) -> list[dict]:
    """Write ``out/<language>-<n>.wav`` and ``out/manifest.jsonl``; returns the manifest rows."""
    from codec.audio import load_audio, sha256_file

    source, out = Path(source), Path(out)
    languages = sorted(p for p in source.iterdir() if p.is_dir()) if source.is_dir() else []
    if not languages:
        raise FileNotFoundError(f"{source}: no language folders of recordings; {INSTALL_HINT}")
    out.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    rows: list[dict] = []
    gap = np.zeros(int(pause * sample_rate), dtype=np.float32)
    for folder in languages:
        files = {
            sha256_file(p): p
            for p in sorted(folder.glob("*.ogg")) + sorted(folder.glob("*.wav"))
        }
        fresh = sorted((p for digest, p in files.items() if digest not in seen), key=lambda p: p.name)
        seen.update(files)
        words, names, length, n = [], [], 0, 0
        for path in fresh:
            wav = load_audio(path, target_sr=sample_rate).wav[0].numpy()
            words += [wav, gap]
            names.append(path.name)
            length += len(wav) + len(gap)
            if length - len(gap) >= seconds * sample_rate:
                name = f"{folder.name}-{n}.wav"
                audio = np.concatenate(words[:-1])
                sf.write(out / name, audio, sample_rate, subtype="PCM_16")
                rows.append(
                    {
                        "path": name,
                        "kind": "speech",
                        "split": "test",
                        "source": "ktuberling-data",
                        "license": "GPL-2+",
                        "language": folder.name,
                        "seconds": round(len(audio) / sample_rate, 3),
                        "original": [f"{folder.name}/{x}" for x in names],
                    }
                )
                words, names, length, n = [], [], 0, n + 1
                if n == per_language:
                    break
    if not rows:
        raise ValueError(f"{source}: no language has {seconds:g} s of recordings")
    (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data/unseen", help="folder to write (default: data/unseen)")
    parser.add_argument("--source", default=str(KTUBERLING), help="ktuberling's sounds folder")
    parser.add_argument("--seconds", type=float, default=6.0, help="minimum length of an item")
    parser.add_argument("--per-language", type=int, default=4, help="at most this many items per language")
    args = parser.parse_args(argv)
    rows = build_unseen(args.out, args.source, seconds=args.seconds, per_language=args.per_language)
    languages = sorted({r["language"] for r in rows})
    print(f"{len(rows)} items ({sum(r['seconds'] for r in rows):.0f} s) in {len(languages)} languages -> {args.out}")


if __name__ == "__main__":
    main()
