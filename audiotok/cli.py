"""The ``audiotok`` command line: one parser, whose subcommands each package defines in its own module.

A package's CLI module has ``register(subparsers)``, which adds its subcommands and sets ``func`` on
each; adding a package adds that module and one line to `COMMAND_MODULES`. This module sits above every
package (it is the only code that imports them all); each CLI module keeps its heavy imports (torch) inside
its handlers, so building the parser and ``--help`` stay quick.

Exit status: 0 when everything worked, 1 when some input failed (each failure is one stderr line),
2 for usage errors (bad flags, unknown codec, a store of another codec), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

COMMAND_MODULES = (
    "codec.cli",  # tokenize, decode, info
    "codec.data.cli",  # data build
    "tokenlm.cli",  # lm generate, lm compress, lm decompress
    "multimodal.cli",  # caption, ask, data build-alm (after codec.data.cli: it joins the data group)
    "eval.cli",  # eval codec
)


def register_commands(subparsers: Any, modules: tuple[str, ...] | None = None) -> None:
    """Let each module add its subcommands; a module that is not installed is skipped (its package is
    optional), while one that is present but fails to import raises. Default: `COMMAND_MODULES`."""
    for name in COMMAND_MODULES if modules is None else modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            parts = name.split(".")
            if e.name in {".".join(parts[: i + 1]) for i in range(len(parts))}:
                continue  # the module (or its package) is not installed
            raise
        module.register(subparsers)


def build_parser(modules: tuple[str, ...] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="audiotok",
        description="Audio tokens: tokenize audio into a token store, decode and inspect it, build the "
        "corpus, evaluate codecs, caption and ask about audio.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    register_commands(sub, modules)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``audiotok`` console script; returns the exit status."""
    from codec.cli import UsageError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UsageError as e:
        print(f"audiotok: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("audiotok: interrupted; re-run the same command to resume.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
