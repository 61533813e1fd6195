"""Lossless compression of a token store with a token LM as the probability model of a range coder.

    audiotok lm compress STORE -o FILE.lmz [--lm default]
    audiotok lm decompress FILE.lmz -o STORE

The coder is constriction's queue ``RangeEncoder`` / ``RangeDecoder`` (FIFO, as an autoregressive model
needs); each code is coded with the LM's distribution over the N codes of its codebook, which
constriction quantizes to integers in one fixed way (``Categorical(perfect=False)``). EnCodec's ``--lm``
does the same with its own small LM (up to 40% fewer bits in its README).

Bit-exact on one machine: the encoder and the decoder compute every distribution with the same calls,
one item and one step at a time (batch 1, `TokenLM.step` with one position), so they see the same floats;
a batched or parallel forward would differ in the last bits and is never used here. Codebooks beyond the
LM's K are coded with a uniform distribution (still lossless).

File layout (little endian): ``MAGIC``, u32 header length, the header (JSON: format, the LM's weights
hash, its codec id and pattern, the store's metadata, one row per item with its word count and the CRC32
of its codes), u32 CRC32 of the header, the items' coded u32 words back to back, u32 CRC32 of those
words. A wrong LM, a truncated file and a corrupt file each stop with one clear error before any
output is written; the output store appears only when every item decoded and matched its CRC.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import struct
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from codec.store import StoreError, StoreMeta, TokenStore
from tokenlm.data import item_cells
from tokenlm.model import IGNORE, TokenLM

MAGIC = b"AUDIOTOK-LMZ\x00\x01"
FORMAT = "audiotok-lmz/1"
ROW_KEYS = ("id", "source", "relpath", "sha256", "seconds", "channel")


class CompressError(ValueError):
    """A file that cannot be decompressed (wrong LM, truncated, corrupt) or a store that cannot be
    compressed; the message names the file and what to do."""


def lm_hash(lm: TokenLM) -> str:
    """sha256 over the LM's parameter names, shapes and fp32 values (what the coder's floats depend on)."""
    h = hashlib.sha256()
    for name, tensor in sorted(lm.state_dict().items()):
        t = tensor.detach().float().cpu().contiguous()
        h.update(name.encode() + str(tuple(t.shape)).encode() + t.numpy().tobytes())
    return h.hexdigest()


def _coder():
    try:
        import constriction
    except ImportError:  # pragma: no cover - a dependency of the package
        raise CompressError("LM compression needs constriction: pip install constriction") from None
    return constriction


@dataclass
class Stats:
    items: int = 0
    frames: int = 0
    seconds: float = 0.0
    raw_bits: int = 0
    coded_bits: int = 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["raw_bits_per_second"] = self.raw_bits / max(self.seconds, 1e-9)
        d["coded_bits_per_second"] = self.coded_bits / max(self.seconds, 1e-9)
        d["saving"] = 1 - self.coded_bits / max(self.raw_bits, 1)
        return d


def _walk(lm: TokenLM, codes: torch.Tensor, code_cells) -> None:
    """Step through one item's cells (``codes`` ``[K_lm, T]``; the decoder passes zeros, the cells' values
    are not read). At each position, for each group of streams the LM decides together (all of them, or
    one at a time with a depth head), ``code_cells(position, streams, probabilities [q, N] float64,
    targets [q])`` returns the codes of those target cells: the encoder codes and returns the targets, the
    decoder decodes them. They become the next position's inputs."""
    cells = item_cells(lm.pattern, codes, lm.config.codebook_size)
    tokens = cells.tokens.clone()
    cache = lm.new_cache(1, cells.length)
    device = next(lm.parameters()).device
    for p in range(cells.length):
        hidden = lm.step_hidden(
            tokens[None, :, p : p + 1].to(device), cells.books[None, :, p : p + 1].to(device), cache, p
        )
        targets = cells.targets[:, p]
        if (targets == IGNORE).all():
            continue

        def choose(streams: slice, logits: torch.Tensor, p=p, targets=targets) -> torch.Tensor:
            probs = torch.softmax(logits[0].double(), dim=-1).cpu().numpy()  # (q, N)
            return torch.as_tensor(code_cells(p, streams, probs, targets[streams]), dtype=torch.long)[None]

        decided = lm.decide(hidden[:, -1], cells.target_books[None, :, p].to(device), choose)[0].cpu()
        if p + 1 < cells.length:
            fill = targets != IGNORE
            tokens[fill, p + 1] = decided[fill]


def _encode_item(lm: TokenLM, codes: np.ndarray) -> np.ndarray:
    constriction = _coder()
    K_lm, N = lm.config.num_codebooks, lm.config.codebook_size
    encoder = constriction.stream.queue.RangeEncoder()
    model = constriction.stream.model.Categorical(perfect=False)
    head = torch.from_numpy(codes[:K_lm].astype(np.int64))

    def code_cells(p: int, streams: slice, probs: np.ndarray, targets: torch.Tensor) -> torch.Tensor:
        fill = (targets != IGNORE).numpy()
        if fill.any():
            encoder.encode(targets.numpy()[fill].astype(np.int32), model, probs[fill])
        return targets.clamp(min=0)

    _walk(lm, head, code_cells)
    rest = codes[K_lm:].reshape(-1).astype(np.int32)
    if rest.size:
        encoder.encode(rest, constriction.stream.model.Uniform(N))
    return encoder.get_compressed()


def _decode_item(lm: TokenLM, words: np.ndarray, num_codebooks: int, frames: int) -> np.ndarray:
    constriction = _coder()
    K_lm, N = lm.config.num_codebooks, lm.config.codebook_size
    decoder = constriction.stream.queue.RangeDecoder(words)
    model = constriction.stream.model.Categorical(perfect=False)
    layout = lm.pattern.layout(K_lm, frames)
    sequence = torch.full(layout.shape, N, dtype=torch.long)

    def code_cells(p: int, streams: slice, probs: np.ndarray, targets: torch.Tensor) -> torch.Tensor:
        fill = (targets != IGNORE).numpy()
        decided = torch.zeros(targets.shape, dtype=torch.long)
        if fill.any():
            decided[torch.from_numpy(fill)] = torch.from_numpy(
                decoder.decode(model, probs[fill]).astype(np.int64)
            )
        column = sequence[streams, p]
        sequence[streams, p] = torch.where(torch.from_numpy(fill), decided, column)
        return decided

    # The walk needs the targets' positions, not their values: zeros stand in for the unknown codes.
    _walk(lm, torch.zeros(K_lm, frames, dtype=torch.long), code_cells)
    head = lm.pattern.revert(sequence[None], K_lm, frames)[0].numpy()
    rest_n = (num_codebooks - K_lm) * frames
    rest = decoder.decode(constriction.stream.model.Uniform(N), rest_n) if rest_n else np.zeros(0, np.int32)
    return np.concatenate([head, rest.reshape(num_codebooks - K_lm, frames)]).astype(np.int64)


def _crc(codes: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(codes, dtype="<i4").tobytes())


def compress_store(lm: TokenLM, store_path: str | Path, out: str | Path, progress=None) -> Stats:
    """Write ``out`` (.lmz) from the token store at ``store_path``; returns the bit counts."""
    try:
        store = TokenStore.open(store_path, mode="r")
    except StoreError as e:
        raise CompressError(str(e)) from None
    with store:
        meta = store.meta
        if lm.meta.get("codec_id") and lm.meta["codec_id"] != meta.codec_id:
            raise CompressError(
                f"{store_path} holds tokens of codec {meta.codec_id}, but the LM models {lm.meta['codec_id']}'s; "
                "compress it with an LM trained on that codec"
            )
        if meta.num_codebooks < lm.config.num_codebooks or meta.codebook_size != lm.config.codebook_size:
            raise CompressError(f"{store_path} holds {meta.num_codebooks} codebooks of {meta.codebook_size}; the "
                                f"LM models {lm.config.num_codebooks} of {lm.config.codebook_size}")  # fmt: skip
        if not len(store):
            raise CompressError(f"{store_path}: the store holds no items; nothing to compress")
        stats, rows, chunks = Stats(), [], []
        for item_id in store.ids():
            row = store.row(item_id)
            codes = np.asarray(store.read(item_id), dtype=np.int64)
            words = _encode_item(lm, codes) if codes.shape[1] else np.zeros(0, np.uint32)
            chunks.append(words.astype("<u4"))
            rows.append({"row": {k: row.get(k) for k in ROW_KEYS}, "frames": int(codes.shape[1]),
                         "words": int(words.size), "crc32": _crc(codes)})  # fmt: skip
            stats.items += 1
            stats.frames += int(codes.shape[1])
            stats.raw_bits += int(codes.size * math.log2(meta.codebook_size))
            stats.coded_bits += 32 * int(words.size)
            if progress:
                progress(1)
        stats.seconds = stats.frames / meta.frame_rate
    header = {"format": FORMAT, "lm": {"weights_sha256": lm_hash(lm), "codec_id": lm.meta.get("codec_id"),
              "pattern": lm.config.pattern, "num_codebooks": lm.config.num_codebooks},
              "store": asdict(meta), "items": rows}  # fmt: skip
    blob = json.dumps(header).encode()
    payload = b"".join(c.tobytes() for c in chunks)
    tmp = Path(str(out) + ".tmp")
    with open(tmp, "wb") as f:
        f.write(MAGIC + struct.pack("<I", len(blob)) + blob + struct.pack("<I", zlib.crc32(blob)))
        f.write(payload + struct.pack("<I", zlib.crc32(payload)))
    os.replace(tmp, out)
    return stats


def read_header(path: str | Path) -> tuple[dict, bytes]:
    """The header and the payload of an .lmz file; `CompressError` for a truncated or corrupt one."""
    data = Path(path).read_bytes()
    if not data.startswith(MAGIC):
        raise CompressError(f"{path}: not an audiotok .lmz file (bad magic); check the path")
    at = len(MAGIC)
    if len(data) < at + 4:
        raise CompressError(f"{path}: truncated (the file ends inside its header); copy it again")
    (size,) = struct.unpack("<I", data[at : at + 4])
    blob = data[at + 4 : at + 4 + size]
    crc = data[at + 4 + size : at + 8 + size]
    if len(crc) < 4:
        raise CompressError(f"{path}: truncated (the file ends inside its header); copy it again")
    if zlib.crc32(blob) != struct.unpack("<I", crc)[0]:
        raise CompressError(f"{path}: corrupt (the header's checksum does not match)")
    header = json.loads(blob)
    if header.get("format") != FORMAT:
        raise CompressError(f"{path}: format {header.get('format')!r}, this audiotok reads {FORMAT!r}")
    payload = data[at + 8 + size :]
    expected = 4 * sum(item["words"] for item in header["items"]) + 4
    if len(payload) < expected:
        raise CompressError(f"{path}: truncated ({len(payload)} of {expected} payload bytes); copy it again")
    if len(payload) > expected or zlib.crc32(payload[:-4]) != struct.unpack("<I", payload[-4:])[0]:
        raise CompressError(f"{path}: corrupt (the payload's checksum does not match)")
    return header, payload[:-4]


def decompress_file(lm: TokenLM, path: str | Path, out: str | Path, progress=None) -> Stats:
    """Rebuild the token store ``out`` (a new folder) from ``path``; nothing is left at ``out`` on error."""
    header, payload = read_header(path)
    if header["lm"]["weights_sha256"] != lm_hash(lm):
        raise CompressError(
            f"{path} was compressed with another LM (weights {header['lm']['weights_sha256'][:12]}, codec "
            f"{header['lm']['codec_id']}); this LM's weights are {lm_hash(lm)[:12]}: pass the same --lm"
        )
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CompressError(f"{out}: exists and is not empty; choose a new output folder")
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    words = np.frombuffer(payload, dtype="<u4")
    meta = StoreMeta(**header["store"])
    stats, at = Stats(), 0
    try:
        with TokenStore.create(partial, meta) as store:
            for item in header["items"]:
                chunk = words[at : at + item["words"]].astype(np.uint32)
                at += item["words"]
                frames = item["frames"]
                codes = (
                    _decode_item(lm, chunk, meta.num_codebooks, frames)
                    if frames
                    else np.zeros((meta.num_codebooks, 0), np.int64)
                )
                if _crc(codes) != item["crc32"]:
                    raise CompressError(f"{path}: item {item['row']['id']!r} decodes to other codes than were "
                                        "compressed (corrupt file, or another machine's floats)")  # fmt: skip
                row = {k: v for k, v in item["row"].items() if v is not None}
                store.append(row.pop("id"), codes, **row)
                stats.items += 1
                stats.frames += frames
                stats.raw_bits += int(codes.size * math.log2(meta.codebook_size))
                stats.coded_bits += 32 * item["words"]
                if progress:
                    progress(1)
        if out.exists():
            out.rmdir()
        os.replace(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    stats.seconds = stats.frames / meta.frame_rate
    return stats
