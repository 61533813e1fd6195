"""The codec's subcommands of ``audiotok``: ``tokenize``, ``decode`` and ``info`` over token stores.

`register` adds them to the command that `audiotok.cli` builds; each package has such a module
(``codec.data.cli`` adds ``data``, ``eval.cli`` adds ``eval``). `UsageError` and `load_codec` live here,
at the bottom of the layers, so every package's subcommands can raise the one and use the other.

Exit status: 0 when everything worked, 1 when some input failed (each failure is one stderr line and a
row in the store's failures list), 2 for usage errors (bad flags, unknown codec, a store of another codec).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path, PurePosixPath
from typing import Any


class UsageError(Exception):
    """A mistake in how the command was called; printed as ``audiotok: error: ...`` with exit status 2."""


def load_codec(name_or_path: str | None = None, device: str = "cpu") -> Any:
    """Load a codec through `codec.registry.load_codec` (looked up here so tests can substitute one)."""
    from codec.registry import load_codec as registry_load_codec

    return registry_load_codec(name_or_path, device=device)


def _print(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)  # keeps an active progress bar intact


def _progress(total: int, unit: str, quiet: bool) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total, unit=unit, disable=quiet or not sys.stderr.isatty(), file=sys.stderr, dynamic_ncols=True
    )


def _load(spec: str | None, device: str) -> Any:
    try:
        return load_codec(spec, device=device)
    except (ValueError, OSError) as e:
        raise UsageError(f"cannot load codec {spec or 'default'!r}: {e}") from None


# ------------------------------------------------------------------------------------------ tokenize
def cmd_tokenize(args: argparse.Namespace) -> int:
    from codec.pipeline.inputs import InputListError, scan_inputs
    from codec.pipeline.tokenize import RankContext, TokenizeOptions, TokenizeUsageError, tokenize

    if not args.inputs and not args.from_list:
        raise UsageError("tokenize needs INPUTS or --from-list FILE; see `audiotok tokenize --help`.")
    try:
        scan = scan_inputs(args.inputs, lists=args.from_list or ())
        ctx = RankContext.from_env()
    except (InputListError, TokenizeUsageError) as e:
        raise UsageError(str(e)) from None
    device = args.device
    if device == "cuda" and ctx.world_size > 1:
        device = f"cuda:{ctx.local_rank}"  # one GPU per local rank
    codec = _load(args.codec, device)
    options = TokenizeOptions(
        num_codebooks=args.num_codebooks,
        batch_seconds=args.batch_seconds,
        max_seconds=args.max_seconds,
        channels=args.channels,
        jobs=args.jobs,
        long_seconds=args.long_seconds,
        quiet=args.quiet or args.json or ctx.rank > 0,
        codec_spec=args.codec,
    )
    try:
        summary = tokenize(scan.files, args.output, codec, options, unmatched=scan.unmatched, ctx=ctx)
    except TokenizeUsageError as e:
        raise UsageError(str(e)) from None
    if ctx.rank == 0 or summary.world_size == 1:
        if args.json:
            print(json.dumps(summary.to_dict()))
        elif not args.quiet:
            rate = summary.seconds / max(summary.wall_seconds, 1e-9)
            _print(
                f"audiotok: stored {summary.stored} items ({summary.seconds:.1f} s of audio, "
                f"{rate:.0f} audio-s/s) in {args.output}; {summary.skipped} already stored, "
                f"{summary.failed} failed"
            )
    return 1 if summary.failed else 0


# -------------------------------------------------------------------------------------------- decode
def _output_relpath(row: dict) -> PurePosixPath:
    """Where an item's wav goes under the output folder: its source relpath with a .wav suffix."""
    rel = PurePosixPath(row.get("relpath") or row["id"])
    if rel.is_absolute() or ".." in rel.parts:  # never write outside the output folder
        rel = PurePosixPath(rel.name)
    stem = rel.stem if row.get("channel") is None else f"{rel.stem}.ch{row['channel']}"
    return rel.with_name(f"{stem}.wav")


def cmd_decode(args: argparse.Namespace) -> int:
    import numpy as np
    import soundfile as sf
    import torch

    from codec.store import StoreError, TokenStore
    from codec.tokens import AudioTokens

    try:
        store = TokenStore.open(args.store, mode="r")
    except StoreError as e:
        raise UsageError(str(e)) from None
    with store:
        codec = _load(args.codec or store.meta.codec, args.device)
        if codec.codec_id != store.meta.codec_id:
            raise UsageError(
                f"{args.store} was made with codec {store.meta.codec_id}, but the codec loaded is "
                f"{codec.codec_id}; pass the matching --codec."
            )
        ids = args.ids or store.ids()
        unknown = [i for i in ids if i not in store]
        if unknown:
            raise UsageError(
                f"{args.store} has no item(s) {', '.join(map(repr, unknown[:5]))}; see `audiotok info`."
            )
        out_dir = Path(args.output)
        written: set[PurePosixPath] = set()
        failed = 0
        bar = _progress(len(ids), "item", args.quiet)
        for item_id in ids:
            bar.update(1)
            row = store.row(item_id)
            rel = _output_relpath(row)
            if rel in written:  # two items with one relpath: keep both, apart
                rel = rel.with_name(f"{rel.stem}.{len(written)}.wav")
            codes = torch.from_numpy(np.asarray(store.read(item_id), dtype=np.int64))[None]  # (1, K, T)
            tokens = AudioTokens(
                codes,
                torch.tensor([codes.shape[-1]]),
                store.meta.frame_rate,
                store.meta.codebook_size,
                store.meta.codec_id,
            )
            try:
                with torch.inference_mode():
                    wav = codec.decode(tokens)[0]  # (C, S)
            except Exception as e:
                failed += 1
                _print(f"audiotok: failed to decode {item_id}: {e}")
                continue
            num_samples = min(wav.shape[-1], round(row["seconds"] * codec.sample_rate))
            target = out_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            sf.write(
                target,
                wav[:, :num_samples].clamp(-1, 1).T.float().cpu().numpy(),
                int(codec.sample_rate),
                subtype="PCM_16",
            )
            written.add(rel)
        bar.close()
    if not args.quiet:
        _print(
            f"audiotok: wrote {len(written)} wav files to {out_dir}"
            + (f", {failed} failed" if failed else "")
        )
    return 1 if failed else 0


# ---------------------------------------------------------------------------------------------- info
def store_info(path: str) -> dict:
    """The figures `audiotok info` prints, as a dict."""
    from codec.store import TokenStore

    with TokenStore.open(path, mode="r") as store:
        meta = store.meta
        seconds = store.total_seconds()
        return {
            "store": str(path),
            "codec_id": meta.codec_id,
            "codec": meta.codec,
            "sample_rate": meta.sample_rate,
            "frame_rate": meta.frame_rate,
            "num_codebooks": meta.num_codebooks,
            "codebook_size": meta.codebook_size,
            "dtype": meta.dtype,
            "items": len(store),
            "frames": store.total_frames(),
            "seconds": round(seconds, 3),
            "hours": round(seconds / 3600, 4),
            "bits_per_second": meta.num_codebooks * math.log2(meta.codebook_size) * meta.frame_rate,
            "failures": len(store.failures()),
            "format_version": meta.format_version,
        }


def cmd_info(args: argparse.Namespace) -> int:
    from codec.store import StoreError

    try:
        info = store_info(args.store)
    except StoreError as e:
        raise UsageError(str(e)) from None
    if args.json:
        print(json.dumps(info))
    else:
        width = max(map(len, info))
        for key, value in info.items():
            print(f"{key:<{width}}  {value}")
        if info["failures"]:
            from codec.store import TokenStore

            with TokenStore.open(args.store) as store:
                failures = store.failures()
            for row in failures[:10]:  # the reasons name the files; the full list is in failures-*.jsonl
                print(f"failed: {row['error']}")
            if len(failures) > 10:
                print(f"failed: ... and {len(failures) - 10} more (see {args.store}/failures-*.jsonl)")
    return 0


# ------------------------------------------------------------------------------------------- parsing
def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``tokenize``, ``decode`` and ``info`` to the ``audiotok`` command (`audiotok.cli`)."""
    from codec.pipeline.reader import default_jobs

    p = sub.add_parser(
        "tokenize",
        help="encode audio files into a token store (resumable)",
        description="Encode audio files into a token store. Re-running skips files already stored "
        "(matched by content hash); bad files are reported and recorded, the rest go on. On several "
        "processes or machines: `accelerate launch --multi_gpu --num_processes N -m codec.cli tokenize ...` "
        "(or torchrun): each rank takes every N-th file and writes its own shards into the same store.",
    )
    p.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUTS",
        help="audio files, folders (searched recursively), globs, or @LIST files; files are read by content",
    )
    p.add_argument(
        "-o", "--output", required=True, metavar="STORE", help="token store folder (created or resumed)"
    )
    p.add_argument(
        "--codec",
        default=None,
        metavar="NAME_OR_PATH",
        help="codec: 'default', a saved codec folder, or a hub id (default: the shipped codec)",
    )
    p.add_argument(
        "--num-codebooks",
        type=int,
        default=None,
        metavar="K",
        help="keep the first K codebooks (lower bitrate); default: all of the codec's",
    )
    p.add_argument(
        "--batch-seconds",
        type=_positive_float,
        default=32.0,
        help="padded audio seconds per encoder batch (items are batched by similar length)",
    )
    p.add_argument(
        "--max-seconds",
        type=_positive_float,
        default=None,
        help="reject files longer than this many seconds (default: no limit)",
    )
    p.add_argument(
        "--channels",
        choices=("downmix", "split"),
        default="downmix",
        help="multichannel files: average to mono, or store each channel as its own item",
    )
    p.add_argument(
        "--from-list",
        action="append",
        default=None,
        metavar="FILE",
        help='read inputs from FILE: one path per line, or JSON lines with a "path" field (relative to '
        "FILE's folder); repeatable; '@FILE' among INPUTS does the same",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=default_jobs(),
        metavar="N",
        help="threads reading, decoding and resampling files while the codec encodes "
        f"(default: cores, at most 8: {default_jobs()} here; 0 reads in the main thread)",
    )
    p.add_argument(
        "--long-seconds",
        type=_positive_float,
        default=60.0,
        help="files longer than this are read in blocks and encoded as a stream (bounded memory; same codes)",
    )
    p.add_argument("--device", default="cpu", help="torch device for the codec, e.g. cpu or cuda")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary (failures still print)")
    p.add_argument(
        "--json", action="store_true", help="print a JSON summary on stdout (implies no progress bar)"
    )
    p.set_defaults(func=cmd_tokenize)

    p = sub.add_parser(
        "decode",
        help="decode a token store back to wav files",
        description="Decode items of a token store to wav files, one per item, at the source's "
        "relative path with a .wav extension, trimmed to the source's length.",
    )
    p.add_argument("store", metavar="STORE", help="token store folder")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for the decoded wav files")
    p.add_argument("--ids", nargs="+", default=None, metavar="ID", help="decode only these item ids")
    p.add_argument(
        "--codec",
        default=None,
        metavar="NAME_OR_PATH",
        help="codec to decode with (default: the one recorded in the store)",
    )
    p.add_argument("--device", default="cpu", help="torch device for the codec, e.g. cpu or cuda")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser(
        "info",
        help="show a token store's codec, size and bitrate",
        description="Show a token store's codec, rates, item count, duration, bitrate and failures.",
    )
    p.add_argument("store", metavar="STORE", help="token store folder")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.set_defaults(func=cmd_info)
