"""``audiotok caption``, ``audiotok ask`` and ``audiotok data build-alm``.

    audiotok caption a.wav b.wav [--model default] [--json]
    audiotok ask a.wav "Is there speech?" [--model default] [--json]
    audiotok data build-alm --out data/alm

Each file that cannot be read is one stderr line and exit status 1; the others are still answered.
Heavy imports (torch, transformers) happen inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import sys

from codec.cli import UsageError


def _load(spec: str):
    from multimodal.api import AudioLanguageModel

    try:
        return AudioLanguageModel.from_pretrained(spec)
    except (ValueError, OSError) as e:
        raise UsageError(f"cannot load the audio-language model {spec!r}: {e}") from None


def _run(args: argparse.Namespace, question: str | None) -> int:
    from codec.audio import AudioError

    alm = _load(args.model)
    status, results = 0, []
    for path in args.files:
        try:
            text = alm.caption(path) if question is None else alm.ask(path, question)
        except AudioError as e:
            print(f"audiotok: {e}", file=sys.stderr)
            status = 1
            continue
        results.append(
            {
                "file": path,
                **({"caption": text} if question is None else {"question": question, "answer": text}),
            }
        )
        if not args.json:
            print(f"{path}\t{text}" if len(args.files) > 1 else text)
    if args.json:
        print(
            json.dumps(
                results if len(args.files) > 1 else (results[0] if results else {}), ensure_ascii=False
            )
        )
    return status


def cmd_caption(args: argparse.Namespace) -> int:
    return _run(args, None)


def cmd_ask(args: argparse.Namespace) -> int:
    return _run(args, args.question)


def cmd_build_alm(args: argparse.Namespace) -> int:
    from pathlib import Path

    from multimodal.scenes import build

    counts = {"train": args.train, "valid": args.valid, "test": args.test, "unseen": args.unseen}
    summary = build(Path(args.out), counts, seed=args.seed)
    print(json.dumps(summary.get("rows", summary), indent=2))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``caption``, ``ask`` and ``data build-alm`` to the top-level CLI."""
    for name, handler, text in (("caption", cmd_caption, "caption audio files with the audio-language model"),
                                ("ask", cmd_ask, "answer a question about audio files")):  # fmt: skip
        p = subparsers.add_parser(name, help=text, description=text)
        p.add_argument("files", nargs="+" if name == "caption" else 1, metavar="FILE", help="audio files")
        if name == "ask":
            p.add_argument("question", help='the question, e.g. "Is there speech?"')
        p.add_argument("--model", default="default", help="an export folder, or default (the shipped model)")
        p.add_argument("--json", action="store_true", help="print JSON instead of text")
        p.set_defaults(func=handler)
    data = subparsers.choices.get("data")
    if data is None:  # the corpus builder's CLI is not installed: add the group here
        data = subparsers.add_parser("data", help="build data sets from installed packages")
        data.add_subparsers(dest="data_command", required=True)
    group = next(a for a in data._actions if isinstance(a, argparse._SubParsersAction))
    b = group.add_parser("build-alm", help="build the paired text-audio set of the audio-language model")
    b.add_argument("--out", default="data/alm")
    b.add_argument("--train", type=int, default=8000)
    b.add_argument("--valid", type=int, default=300)
    b.add_argument("--test", type=int, default=600)
    b.add_argument("--unseen", type=int, default=300)
    b.add_argument("--seed", type=int, default=0)
    b.set_defaults(func=cmd_build_alm)
