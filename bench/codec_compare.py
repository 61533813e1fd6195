"""Score several codec folders side by side on one kind of the corpus's test split (probes, ablations).

    python bench/codec_compare.py A_DIR B_DIR [...] [--kind speech] [--limit 20] [--num-codebooks 3,12]
        [--title "Encoder input probe"] [--note "what was trained"]

Items: every n-th test item of the kind (deterministic), first ``--crop-seconds`` of each; each codec
reconstructs through its training forward pass (encode, quantize with the first k codebooks, decode).
Metrics from eval/metrics.py: mel distance for every kind, PESQ-WB and STOI for speech; means. Two
diagnostics for every kind: the level (output RMS / input RMS) and the phase-derivative distance of
codec/losses.py (group delay and instantaneous frequency against the input's; 0 is coherent, about 2.7
is noise).
Writes the section ``--title`` of BENCHMARKS.md (``--no-write`` prints only).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import update_section  # noqa: E402
from codec.nn.model import AudiotokCodec  # noqa: E402
from codec.tokens import resample  # noqa: E402
from codec.train.losses import MultiResolutionPhaseDerivativeLoss  # noqa: E402
from eval.metrics import mel_distance, pesq_wb, stoi  # noqa: E402


def test_rows(corpus: str | Path, kind: str, limit: int, sources: list[str] | None = None) -> list[dict]:
    """Every n-th manifest row of ``kind`` (and of ``sources``, if given) in the test split, at most ``limit``."""
    rows = [json.loads(x) for x in (Path(corpus) / "manifest.jsonl").read_text().splitlines() if x.strip()]
    rows = [r for r in rows if r["split"] == "test" and r["kind"] == kind]
    rows = [r for r in rows if sources is None or r.get("source") in sources]
    return rows[:: max(1, len(rows) // limit)][:limit]


def load_crop(corpus: str | Path, row: dict, crop_seconds: float, sample_rate: int) -> torch.Tensor:
    """The first ``crop_seconds`` of a manifest row's audio, mono, at ``sample_rate``: ``[1, S]``."""
    wav, sr = sf.read(Path(corpus) / row["path"], dtype="float32", always_2d=True)
    return resample(torch.from_numpy(wav.mean(axis=1)[: int(crop_seconds * sr)])[None], sr, sample_rate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("codecs", nargs="+", help="codec folders (config.json + model.safetensors)")
    parser.add_argument("--corpus", default="data/corpus")
    parser.add_argument("--kind", default="speech")
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--source", help="only manifest rows of these comma-separated sources (packages)")
    parser.add_argument("--crop-seconds", type=float, default=6.0)
    parser.add_argument("--num-codebooks", default="3,12")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--title", default="Codec comparison")
    parser.add_argument("--note", default="", help="a line describing what is compared")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = test_rows(args.corpus, args.kind, args.limit, args.source.split(",") if args.source else None)
    speech = args.kind == "speech"
    lines = [args.note, ""] if args.note else []
    lines += [
        f"{len(rows)} {args.kind} items of the `{args.corpus}` test split, first {args.crop_seconds:g} s each; means.",
        "",
        "| codec | k | mel distance ↓ |"
        + (" PESQ-WB ↑ | STOI ↑ |" if speech else "")
        + " level (RMS out/in) | phase-derivative distance ↓ |",
        "|---|---|---|" + ("---|---|" if speech else "") + "---|---|",
    ]
    phase_distance = MultiResolutionPhaseDerivativeLoss()
    for folder in args.codecs:
        codec = AudiotokCodec.from_pretrained(folder)
        for k in (int(x) for x in args.num_codebooks.split(",")):
            scores = []
            for r in rows:
                x = load_crop(args.corpus, r, args.crop_seconds, codec.sample_rate)[0]
                with torch.no_grad():
                    y = codec.model(x[None], num_codebooks=k).wav[0, : len(x)]
                s = [mel_distance(x, y, codec.sample_rate)]
                if speech:
                    s += [pesq_wb(x, y), stoi(x, y)]
                s += [float(y.square().mean().sqrt() / x.square().mean().sqrt().clamp(min=1e-8))]
                s += [float(phase_distance(y[None], x[None]))]
                scores.append(s)
            m = np.nanmean(np.array(scores, dtype=float), axis=0)
            lines.append(
                f"| `{folder}` ({codec.codec_id}) | {k} | " + " | ".join(f"{v:.3f}" for v in m) + " |"
            )
            print(lines[-1], flush=True)
    body = "\n".join(lines)
    if not args.no_write:
        update_section(args.title, body)


if __name__ == "__main__":
    main()
