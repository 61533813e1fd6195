"""A tiny paired set for the multimodal tests: tones, noise and chirps with captions and questions,
tokenized with the default codec."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SR = 16000


def _clip(kind: str, i: int, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    if kind == "tone":
        return 0.5 * np.sin(2 * np.pi * (300 + 120 * i) * t)
    if kind == "noise":
        return 0.3 * np.random.default_rng(i).uniform(-1, 1, len(t))
    f1 = 2000 + 300 * i
    return 0.5 * np.sin(2 * np.pi * (200 * t + (f1 - 200) * t**2 / (2 * seconds)))


def make_paired_set(root: Path, per_split: dict[str, int]) -> Path:
    """``root/<split>.jsonl``, ``root/audio/<split>/*.wav`` and ``root/tokens/<split>``."""
    import soundfile as sf

    from audiotok.cli import main as audiotok

    kinds = ("tone", "noise", "chirp")
    for split, n in per_split.items():
        rows = []
        for i in range(n):
            kind = kinds[i % 3]
            cid = f"{split}-{i:03d}"
            path = root / "audio" / split / f"{cid}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, _clip(kind, i, 0.4 + 0.1 * (i % 4)), 16000)
            rows.append({
                "id": cid, "path": f"audio/{split}/{cid}.wav", "split": split, "kind": "scene",
                "license": "CC0", "captions": [{"text": f"a {kind} sound", "template": "c0", "heldout": False},
                                               {"text": f"you hear a {kind}", "template": "c1", "heldout": False}],
                "qa": [{"question": "what sound is it?", "answer": kind, "type": "class", "template": "q0",
                        "heldout": False},
                       {"question": "is it a tone?", "answer": "yes" if kind == "tone" else "no",
                        "type": "exist", "template": "q1", "heldout": split == "valid"}],
            })  # fmt: skip
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        assert (
            audiotok(["tokenize", str(root / "audio" / split), "-o", str(root / "tokens" / split), "--quiet"])
            == 0
        )
    return root
