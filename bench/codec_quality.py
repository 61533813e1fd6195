"""Codec quality on the corpus test split, against Opus and Codec2 in the same run.

    python bench/codec_quality.py [--codec default] [--corpus data/corpus] [--split test] [--limit 40]
    python bench/codec_quality.py --wer --language en --crop-seconds 0 --limit 100 --title ...

Per kind (speech, music, sfx): log-mel distance, STFT distance, SI-SDR, and for speech PESQ-WB and STOI
(eval/metrics.py names the implementations), at 3, 6 and 12 codebooks (1.5, 3, 6 kbps for the default)
and for Opus 6/8/12 kbps and Codec2 1.6/3.2 kbps; with --wer, the word error rate of
Whisper tiny.en too (eval/asr.py; English speech only, so pass --language en on a mixed corpus);
with --visqol, ViSQOL v3 on every kind (eval/visqol.py). Writes the JSON report beside BENCHMARKS.md
(bench/results/codec_quality.json) and the markdown tables into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import update_section  # noqa: E402
from codec.registry import load_codec  # noqa: E402
from eval.asr import Transcriber, manifest_texts  # noqa: E402
from eval.baselines import parse_baselines  # noqa: E402
from eval.codec_eval import evaluate_codec  # noqa: E402
from eval.codec_items import collect_items  # noqa: E402
from eval.visqol import VisqolScorer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codec", default="default", help="codec name or folder")
    parser.add_argument(
        "--corpus", default="data/corpus", help="corpus folder with manifest.jsonl (make data)"
    )
    parser.add_argument("--split", default="test", help="corpus split to score")
    parser.add_argument("--limit", type=int, default=40, help="items per kind (evenly spaced, deterministic)")
    parser.add_argument("--source", help="only manifest rows of these comma-separated sources (packages)")
    parser.add_argument("--language", help="only manifest rows of these comma-separated languages, e.g. en")
    parser.add_argument("--wer", action="store_true", help="also Whisper tiny.en WER on speech (.[asr])")
    parser.add_argument("--visqol", action="store_true", help="also ViSQOL v3 on every kind (.[visqol])")
    parser.add_argument(
        "--crop-seconds", type=float, default=6.0, help="score the first N seconds of each item (0: whole)"
    )
    parser.add_argument("--num-codebooks", default="3,6,12", help="codebook counts of our codec")
    parser.add_argument("--baselines", default="opus6,opus8,opus12,codec2_1600,codec2_3200")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--title", default="Codec quality", help="BENCHMARKS.md section title")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    codec = load_codec(args.codec)
    sources = args.source.split(",") if args.source else None
    languages = args.language.split(",") if args.language else None
    items = collect_items(
        args.corpus, split=args.split, limit=args.limit, sources=sources, languages=languages
    )
    transcriber = Transcriber(threads=args.threads) if args.wer else None
    report = evaluate_codec(
        codec,
        items,
        num_codebooks_list=[int(k) for k in args.num_codebooks.split(",")],
        baselines=parse_baselines(args.baselines),
        split=args.split,
        source=args.corpus + (f" [{', '.join(sources)}]" if sources else ""),
        crop_seconds=args.crop_seconds or None,
        transcriber=transcriber,
        texts=manifest_texts(args.corpus) if args.wer else None,
        progress=print if args.wer or args.visqol else None,
        visqol=VisqolScorer() if args.visqol else None,
    )
    markdown = report.to_markdown()
    print(markdown)
    if not args.no_write:
        out = ROOT / "bench" / "results"
        out.mkdir(parents=True, exist_ok=True)
        report.to_json(out / f"{re.sub('[^a-z0-9]+', '_', args.title.lower()).strip('_')}.json")
        body = (
            f"Codec `{codec.codec_id}`, corpus `{args.corpus}` split `{args.split}`, "
            + (f"sources {', '.join(sources)}, " if sources else "")
            + (f"languages {', '.join(languages)}, " if languages else "")
            + f"items (at most {args.limit} per kind): "
            + ", ".join(f"{kind} {n}" for kind, n in Counter(kind for _, kind in items).items())
            + ", "
            + (f"first {args.crop_seconds:g} s of each. " if args.crop_seconds else "whole items. ")
            + "Means (medians in the JSON). Lower is better for mel/STFT "
            "distance; higher for SI-SDR, PESQ-WB, STOI, ViSQOL.\n\n" + markdown
        )
        update_section(args.title, body)


if __name__ == "__main__":
    main()
