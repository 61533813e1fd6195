"""The ``audiotok`` command line: ``tokenize``, ``decode`` and ``info`` over token stores.

Other packages add subcommand groups through a ``register(subparsers)`` hook in an optional module
(``codec.corpus`` adds ``data``, ``eval.cli`` adds ``eval``); they are imported inside `main`, so importing
codec never imports eval, and a missing plugin is skipped while a broken one still raises.

Exit status: 0 when everything worked, 1 when some input failed (each failure is one stderr line and a
row in the store's failures list), 2 for usage errors (bad flags, unknown codec, a store of another codec).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

PLUGIN_MODULES = ("codec.corpus", "eval.cli")


class UsageError(Exception):
    """A mistake in how the command was called; printed as ``audiotok: error: ...`` with exit status 2."""


def load_codec(name_or_path: str | None = None, device: str = "cpu") -> Any:
    """Load a codec through `codec.registry.load_codec` (looked up here so tests can substitute one)."""
    from codec.registry import load_codec as registry_load_codec

    return registry_load_codec(name_or_path, device=device)


def _print(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)  # keeps an active progress bar intact


def _report_failure(path: str, message: str) -> None:
    from codec.audio import display_path

    name = display_path(path)
    reason = message[len(name) + 2 :] if message.startswith(name + ": ") else message
    _print(f"audiotok: skipped {name}: {reason}")


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
@dataclass
class _Pending:
    """One loaded item waiting to be encoded. wav: float32 ``[1, S]`` at the codec's rate."""

    id: str
    wav: Any
    source: str
    relpath: str
    sha256: str
    seconds: float
    channel: int | None


def _open_or_create_store(path: str, codec: Any, num_codebooks: int, codec_spec: str | None) -> Any:
    from codec.store import StoreError, StoreMeta, TokenStore

    try:
        if (Path(path) / "meta.json").exists():
            store = TokenStore.open(path, mode="a")
            meta = store.meta
            if meta.codec_id != codec.codec_id or meta.num_codebooks != num_codebooks:
                store.close()
                raise UsageError(
                    f"{path} holds codes of codec {meta.codec_id} with K={meta.num_codebooks}, not "
                    f"{codec.codec_id} with K={num_codebooks}; pass the same --codec and --num-codebooks "
                    "or choose a new store."
                )
            return store
        if codec_spec and os.path.exists(codec_spec):
            codec_spec = os.path.abspath(codec_spec)  # so decode finds it from any working directory
        meta = StoreMeta(
            codec_id=codec.codec_id,
            sample_rate=int(codec.sample_rate),
            frame_rate=codec.frame_rate,
            num_codebooks=num_codebooks,
            codebook_size=int(codec.codebook_size),
            codec=codec_spec or "default",
        )
        return TokenStore.create(path, meta)
    except StoreError as e:
        raise UsageError(str(e)) from None


def _length_batches(items: list[_Pending], batch_samples: int) -> list[list[_Pending]]:
    """Group items of similar length: sorted by length, each batch's padded size within ``batch_samples``."""
    batches: list[list[_Pending]] = []
    current: list[_Pending] = []
    for item in sorted(items, key=lambda x: x.wav.shape[-1]):
        if current and item.wav.shape[-1] * (len(current) + 1) > batch_samples:
            batches.append(current)
            current = []
        current.append(item)
    if current:
        batches.append(current)
    return batches


def _encode_batch(codec: Any, batch: list[_Pending], num_codebooks: int) -> list[Any]:
    """Codes ``[K, T_i]`` of each item, encoded as one zero-padded batch ``[B, 1, S_max]``."""
    import torch

    max_len = max(x.wav.shape[-1] for x in batch)
    wav = torch.zeros(len(batch), 1, max_len)  # (B, 1, S)
    for i, x in enumerate(batch):
        wav[i, :, : x.wav.shape[-1]] = x.wav
    lengths = torch.tensor([x.wav.shape[-1] for x in batch], dtype=torch.long)
    with torch.inference_mode():
        tokens = codec.encode(wav, codec.sample_rate, num_codebooks=num_codebooks, lengths=lengths)
    return [tokens.item(i)[:num_codebooks].cpu() for i in range(len(batch))]


class _Tokenizer:
    """The tokenize loop's state: store, counters, and the window of items loaded but not yet encoded."""

    def __init__(self, args: argparse.Namespace, codec: Any, store: Any, num_codebooks: int) -> None:
        self.args, self.codec, self.store, self.num_codebooks = args, codec, store, num_codebooks
        self.pending: list[_Pending] = []
        self.pending_hashes: set[tuple[str, int | None]] = set()
        self.used_ids: set[str] = set()
        self.stored = self.skipped = self.failed = 0
        self.seconds = 0.0

    def fail(self, path: str, message: str) -> None:
        self.failed += 1
        self.store.record_failure(path, message)
        _report_failure(path, message)

    def _item_id(self, relpath: str, channel: int | None, sha: str) -> str:
        item_id = relpath if channel is None else f"{relpath}#ch{channel}"
        if item_id in self.store or item_id in self.used_ids:
            item_id = f"{item_id}#{sha[:12]}"  # same relative path from two inputs, different content
        self.used_ids.add(item_id)
        return item_id

    def add_file(self, path: Path, relpath: str) -> None:
        from codec.audio import AudioError, load_audio, sha256_file

        source = os.fsdecode(path)
        try:
            sha = sha256_file(path)
        except OSError as e:
            try:  # load_audio words the reason best (directory, dangling link, permission)
                load_audio(path)
            except AudioError as err:
                self.fail(source, str(err))
                return
            self.fail(source, f"{source}: cannot be read ({e}).")
            return
        split = self.args.channels == "split"
        if not split and (self.store.has_source_hash(sha) or (sha, None) in self.pending_hashes):
            self.skipped += 1  # already stored (resume), or the same content under another name
            return
        try:
            audio = load_audio(path, self.codec.sample_rate, self.args.channels, self.args.max_seconds)
        except AudioError as e:
            self.fail(source, str(e))
            return
        channels = range(audio.wav.shape[0]) if split else [None]
        for c in channels:
            key = (sha, c)
            if self.store.has_source_hash(sha, c) or key in self.pending_hashes:
                self.skipped += 1
                continue
            self.pending_hashes.add(key)
            wav = audio.wav if c is None else audio.wav[c : c + 1]
            self.pending.append(
                _Pending(self._item_id(relpath, c, sha), wav, source, relpath, sha, audio.seconds, c)
            )

    def pending_seconds(self) -> float:
        return sum(x.wav.shape[-1] for x in self.pending) / self.codec.sample_rate

    def flush(self) -> None:
        """Encode the pending items in length-sorted batches, then append them in input order."""
        batch_samples = max(1, int(self.args.batch_seconds * self.codec.sample_rate))
        codes: dict[str, Any] = {}
        for batch in _length_batches(self.pending, batch_samples):
            try:
                results = _encode_batch(self.codec, batch, self.num_codebooks)
            except Exception as batch_error:
                results = [batch_error]
                if len(batch) > 1:  # find the item that breaks the batch; the others still get stored
                    results = []
                    for x in batch:
                        try:
                            results += _encode_batch(self.codec, [x], self.num_codebooks)
                        except Exception as e:
                            results.append(e)
            for x, r in zip(batch, results):
                codes[x.id] = r
        for x in self.pending:
            result = codes[x.id]
            if isinstance(result, Exception):
                self.fail(
                    x.source, f"{x.source}: the codec failed on it ({type(result).__name__}: {result})."
                )
                continue
            self.store.append(
                x.id,
                result,
                source=x.source,
                relpath=x.relpath,
                sha256=x.sha256,
                seconds=x.seconds,
                channel=x.channel,
            )
            self.stored += 1
            self.seconds += x.seconds
        self.pending = []
        self.pending_hashes = set()


def cmd_tokenize(args: argparse.Namespace) -> int:
    from codec.audio import scan_inputs

    scan = scan_inputs(args.inputs)
    codec = _load(args.codec, args.device)
    num_codebooks = args.num_codebooks or codec.num_codebooks
    if not 1 <= num_codebooks <= codec.num_codebooks:
        raise UsageError(f"--num-codebooks must be in [1, {codec.num_codebooks}] for codec {codec.codec_id}")
    store = _open_or_create_store(args.output, codec, num_codebooks, args.codec)
    window_seconds = max(args.batch_seconds * 4, 1.0)  # encode in windows: bounded memory, batchable lengths
    with store:
        run = _Tokenizer(args, codec, store, num_codebooks)
        for spec in scan.unmatched:
            run.fail(spec, f"{spec}: matched no audio files; check the path.")
        bar = _progress(len(scan.files), "file", args.quiet)
        for f in scan.files:
            run.add_file(f.path, f.relpath)
            if run.pending_seconds() >= window_seconds:
                run.flush()
            bar.update(1)
            bar.set_postfix_str(f"{run.seconds + run.pending_seconds():.0f} s audio")
        run.flush()
        bar.close()
        summary = {
            "store": str(args.output),
            "codec_id": codec.codec_id,
            "files": len(scan.files),
            "stored": run.stored,
            "skipped": run.skipped,
            "failed": run.failed,
            "seconds": round(run.seconds, 3),
            "items_total": len(store),
        }
    if args.json:
        print(json.dumps(summary))
    elif not args.quiet:
        _print(
            f"audiotok: stored {run.stored} items ({run.seconds:.1f} s of audio) in {args.output}; "
            f"{run.skipped} already stored, {run.failed} failed"
        )
    return 1 if run.failed else 0


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
    return 0


# ------------------------------------------------------------------------------------------- parsing
def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="audiotok", description="Audio tokens: tokenize audio into a token store, decode it, inspect it."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "tokenize",
        help="encode audio files into a token store (resumable)",
        description="Encode audio files into a token store. Re-running skips files already stored "
        "(matched by content hash); bad files are reported and recorded, the rest go on.",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUTS",
        help="audio files, folders (searched recursively) or globs; files are read by content",
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
    p.add_argument("--device", default="cpu", help="torch device for the codec, e.g. cpu or cuda")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary (failures still print)")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
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

    _register_plugins(sub)
    return parser


def _register_plugins(subparsers: Any) -> None:
    """Let optional packages add subcommand groups; a missing one is skipped, a broken one raises."""
    for name in PLUGIN_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            parts = name.split(".")
            if e.name in {".".join(parts[: i + 1]) for i in range(len(parts))}:
                continue  # the plugin (or its package) is not installed
            raise
        module.register(subparsers)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``audiotok`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
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
