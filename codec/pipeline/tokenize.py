"""The tokenize pipeline behind ``audiotok tokenize``: many files in, one token store out.

Design:

* **Overlap.** ``jobs`` reader threads check, hash, decode and resample files ahead of the encoder
  (`codec.pipeline.reader`: numpy, libsndfile and soxr, no torch), in input order with a bounded look-ahead.
  Short items are batched by similar length (sorted, each batch's padded size within ``batch_seconds``;
  the codec guarantees batch-mates do not change an item's codes) in windows of ``4 * batch_seconds``;
  a window's batches go to the encoder threads while the next window is read, and the main thread
  appends each finished window in input order.
* **Encoder threads.** Our codec on the CPU gets one encoder thread per torch thread, each running
  torch single-threaded (`encoder_threads`). On 2 cores this beat one encoder on 2 torch threads by
  1.2-1.35x on bench/tokenize_speed.py's folder: independent encoders need no OpenMP barriers, which
  stall whenever a reader takes a core. The rest of the process keeps its torch thread count.
* **Long files.** A file longer than ``long_seconds`` is read in blocks (`codec.audio.iter_audio_blocks`,
  resampled by soxr's streaming resampler: the same samples as the whole file) and encoded in the main
  thread, on all torch threads, by `codec.pipeline.streaming.ChunkedStreamEncoder`, which replays the codec's own
  chunk grid (``AudiotokCodec._encode_chunked``: ``chunk_frames`` per chunk, ``context_frames`` of
  overlap), so the codes equal ``codec.encode`` of the whole file while memory holds a few blocks.
  Codecs that do not declare a receptive field (the pretrained adapters) are encoded in one pass.
* **Many processes.** Under ``accelerate launch`` / ``torchrun`` (RANK, WORLD_SIZE, LOCAL_RANK set),
  every rank scans the same sorted input list and takes files ``rank, rank + world, ...``; item ids are
  decided from the full list, so they do not depend on the number of ranks. Rank 0 creates the store,
  the others wait for it; each rank writes its own shards and manifest (writer tag ``r<rank>``), which
  `TokenStore.open` unions: no merge step is needed (codec/ranks.py).
* **Resume.** A file whose content hash is already stored is skipped, whatever its path. The store's
  append is crash safe (codec/store.py), so a rerun after ``kill -9`` finishes the job.
* **Bad input.** Every problem with an input becomes one line on stderr naming the file and a row in the
  store's failures list; the run goes on, and the exit status is 1.

Known limit: two files with identical content that land on different ranks are both stored (under their
own ids); one process stores the first only.
"""

from __future__ import annotations

import collections
import os
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from codec.audio import AudioError, display_path, iter_audio_blocks
from codec.pipeline.batching import (
    Pending,
    encode_batch,
    encoder_threads,
    length_batches,
    single_threaded_torch,
)
from codec.pipeline.inputs import InputFile
from codec.pipeline.ranks import RankContext, TokenizeUsageError, open_or_create_store, wait_for_meta
from codec.pipeline.reader import Prepared, ReadOptions, default_jobs, read_ahead
from codec.pipeline.streaming import ChunkedStreamEncoder, encode_blocks, in_background, supports_streaming
from codec.store import TokenStore


@dataclass
class TokenizeOptions:
    """How to tokenize; the CLI flags of ``audiotok tokenize`` map onto these one to one."""

    num_codebooks: int | None = None  # first K codebooks; None: all
    batch_seconds: float = 32.0  # padded audio seconds per encoder batch
    max_seconds: float | None = None  # reject longer files
    channels: str = "downmix"  # or "split": one item per channel
    jobs: int = field(default_factory=default_jobs)  # reader threads; 0 reads in the main thread
    long_seconds: float = 60.0  # longer files are read in blocks and encoded as a stream
    block_seconds: float = 10.0  # block size for long files
    quiet: bool = False  # no progress bar
    codec_spec: str | None = None  # recorded in the store's meta for decode


@dataclass
class TokenizeSummary:
    """What a run did (summed over ranks when torch.distributed is up). ``seconds``: audio stored."""

    store: str
    codec_id: str
    files: int
    stored: int
    skipped: int
    failed: int
    seconds: float
    items_total: int
    wall_seconds: float
    rank: int = 0
    world_size: int = 1

    def to_dict(self) -> dict:
        out = asdict(self)
        out["seconds"] = round(self.seconds, 3)
        out["wall_seconds"] = round(self.wall_seconds, 3)
        out["audio_seconds_per_second"] = round(self.seconds / max(self.wall_seconds, 1e-9), 2)
        return out


def report_failure(path: str, message: str) -> None:
    """One stderr line: ``audiotok: skipped NAME: REASON`` (kept apart from an active progress bar)."""
    from tqdm import tqdm

    name = display_path(path)
    reason = message[len(name) + 2 :] if message.startswith(name + ": ") else message
    tqdm.write(f"audiotok: skipped {name}: {reason}", file=sys.stderr)


# --------------------------------------------------------------------------------------- the loop
@dataclass
class _Window:
    """Items handed to the encoders together: ``items`` in input order, their batches being encoded."""

    items: list[Pending]
    batches: list[tuple[list[Pending], Future]]


class Tokenizer:
    """One rank's run: reads its share of the inputs, encodes, appends, and counts."""

    def __init__(self, codec: Any, store: TokenStore, options: TokenizeOptions, num_codebooks: int):
        self.codec, self.store, self.options, self.k = codec, store, options, num_codebooks
        self.streaming = supports_streaming(codec)
        self.pending: list[Pending] = []  # loaded, not yet handed to the encoders
        self.windows: collections.deque[_Window] = collections.deque()  # being encoded, oldest first
        self.pending_hashes: set[tuple[str, int | None]] = set()  # pending or being encoded
        self.used_ids: set[str] = set()
        self.plain_relpaths: set[int] = set()  # indexes whose relpath may be used as id unchanged
        self.stored = self.skipped = self.failed = 0
        self.seconds = 0.0
        self.encoders: ThreadPoolExecutor | None = None

    def read_options(self) -> ReadOptions:
        """What the readers need: the codec's rate, the channel policy, and the hashes already stored."""
        return ReadOptions(
            sample_rate=int(self.codec.sample_rate),
            channels=self.options.channels,
            max_seconds=self.options.max_seconds,
            long_seconds=self.options.long_seconds if self.streaming else None,
            skip_hashes=self.store.source_hashes(),  # a snapshot; the main thread checks again
        )

    def start_encoders(self, threads: int) -> None:
        """Encode batches on ``threads`` threads, torch single-threaded in each; with one, in this thread
        (torch's own threads run markedly slower under a thread other than the one that started them)."""
        if threads > 1:
            self.encoders = ThreadPoolExecutor(
                threads, thread_name_prefix="audiotok-encode", initializer=single_threaded_torch
            )

    def _encode_later(self, batch: list[Pending]) -> Future:
        if self.encoders is not None:
            return self.encoders.submit(self._encode_or_isolate, batch)
        future: Future = Future()
        future.set_result(self._encode_or_isolate(batch))  # never raises for a bad item
        return future

    def stop_encoders(self) -> None:
        if self.encoders is not None:
            self.encoders.shutdown(wait=True, cancel_futures=True)
            self.encoders = None

    # ------------------------------------------------------------------ in the main thread
    def fail(self, path: str, message: str) -> None:
        self.failed += 1
        self.store.record_failure(path, message)
        report_failure(path, message)

    def item_id(self, index: int, relpath: str, sha: str, channel: int | None) -> str:
        """The relpath, unless another input shares it (or the store holds it with other content)."""
        base = relpath
        taken = base in self.store and self.store.row(base).get("sha256") != sha
        if index not in self.plain_relpaths or taken:
            base = f"{relpath}#{sha[:12]}"
        item_id = base if channel is None else f"{base}#ch{channel}"
        while item_id in self.used_ids:  # only if a file changed under us between hash and now
            item_id += "+"
        self.used_ids.add(item_id)
        return item_id

    def _is_done(self, sha: str, channel: int | None) -> bool:
        return self.store.has_source_hash(sha, channel) or (sha, channel) in self.pending_hashes

    def add(self, index: int, prepared: Prepared) -> None:
        source = os.fsdecode(prepared.file.path)
        if prepared.error is not None:
            self.fail(source, prepared.error)
        elif prepared.skipped:
            self.skipped += 1
        elif prepared.stream:
            self._add_stream(index, prepared, source)
        else:
            self._add_loaded(index, prepared, source)

    def _add_loaded(self, index: int, prepared: Prepared, source: str) -> None:
        sha, split = prepared.sha256, self.options.channels == "split"
        if not split and self._is_done(sha, None):
            self.skipped += 1  # the same content under another name earlier in this run
            return
        wav = torch.from_numpy(prepared.wav)  # (C, S), C=1 unless split
        seconds = wav.shape[-1] / self.codec.sample_rate
        for c in range(wav.shape[0]) if split else [None]:
            if self._is_done(sha, c):
                self.skipped += 1
                continue
            self.pending_hashes.add((sha, c))
            item_wav = wav if c is None else wav[c : c + 1]  # (1, S)
            item_id = self.item_id(index, prepared.file.relpath, sha, c)
            self.pending.append(Pending(item_id, item_wav, source, prepared.file.relpath, sha, seconds, c))

    def _add_stream(self, index: int, prepared: Prepared, source: str) -> None:
        """A long file: blocks from a reader thread into one stream encoder per item, on all torch threads."""
        sha, split = prepared.sha256, self.options.channels == "split"
        if not split and self._is_done(sha, None):
            self.skipped += 1
            return
        self.drain(keep=0)  # the encoder threads are idle while this thread encodes the stream
        blocks = iter_audio_blocks(
            prepared.file.path,
            self.codec.sample_rate,
            "keep" if split else "downmix",
            self.options.max_seconds,
            self.options.block_seconds,
        )
        encoders: list[ChunkedStreamEncoder] = []
        samples = 0
        try:
            for block in in_background(blocks):  # (C, S)
                if not encoders:
                    encoders = [ChunkedStreamEncoder(self.codec, self.k) for _ in range(block.shape[0])]
                for encoder, channel in zip(encoders, block):
                    encoder.push(channel)
                samples += block.shape[-1]
            codes = [e.finish() for e in encoders]
        except AudioError as e:
            self.fail(source, str(e))
            return
        except Exception as e:
            self.fail(source, f"{source}: the codec failed on it ({type(e).__name__}: {e}).")
            return
        seconds = samples / self.codec.sample_rate
        for c, item_codes in enumerate(codes):
            channel = c if split else None
            if self._is_done(sha, channel):
                self.skipped += 1
                continue
            item_id = self.item_id(index, prepared.file.relpath, sha, channel)
            self._append(
                Pending(item_id, torch.zeros(1, 0), source, prepared.file.relpath, sha, seconds, channel),
                item_codes,
            )

    def pending_seconds(self) -> float:
        return sum(x.wav.shape[-1] for x in self.pending) / self.codec.sample_rate

    def _append(self, x: Pending, codes: torch.Tensor) -> None:
        self.store.append(
            x.id,
            codes,
            source=x.source,
            relpath=x.relpath,
            sha256=x.sha256,
            seconds=x.seconds,
            channel=x.channel,
        )
        self.stored += 1
        self.seconds += x.seconds

    def submit(self) -> None:
        """Hand the pending items to the encoders as length-sorted batches (one window)."""
        if not self.pending:
            return
        batch_samples = max(1, int(self.options.batch_seconds * self.codec.sample_rate))
        batches = [
            (batch, self._encode_later(batch)) for batch in length_batches(self.pending, batch_samples)
        ]
        self.windows.append(_Window(self.pending, batches))
        self.pending = []

    def drain(self, keep: int = 0) -> None:
        """Append the oldest windows, in input order, as their batches finish, until ``keep`` remain."""
        while len(self.windows) > keep:
            window = self.windows.popleft()
            results: dict[str, Any] = {}
            for batch, future in window.batches:
                for x, r in zip(batch, future.result()):
                    results[x.id] = r
            for x in window.items:
                result = results[x.id]
                if isinstance(result, Exception):
                    self.fail(
                        x.source, f"{x.source}: the codec failed on it ({type(result).__name__}: {result})."
                    )
                else:
                    self._append(x, result)
                self.pending_hashes.discard((x.sha256, x.channel))

    def flush(self) -> None:
        """Encode and append everything pending."""
        self.submit()
        self.drain(keep=0)

    def _encode_or_isolate(self, batch: list[Pending]) -> list[Any]:
        """Codes per item; if the batch fails, each item alone, so one bad item costs only itself."""
        try:
            return encode_batch(self.codec, [x.wav for x in batch], self.k)
        except Exception as batch_error:
            if len(batch) == 1:
                return [batch_error]
        results: list[Any] = []
        for x in batch:
            try:
                results += encode_batch(self.codec, [x.wav], self.k)
            except Exception as e:
                results.append(e)
        return results


def _plain_relpaths(files: list[InputFile]) -> set[int]:
    """Indexes of files whose relpath is the first of its kind in the (sorted) full input list."""
    first: dict[str, int] = {}
    for i, f in enumerate(files):
        first.setdefault(f.relpath, i)
    return set(first.values())


def _progress(total: int, quiet: bool) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total,
        unit="file",
        disable=quiet or not sys.stderr.isatty(),
        file=sys.stderr,
        dynamic_ncols=True,
        desc="tokenize",
    )


def _reduce(ctx: RankContext, distributed: bool, counts: list[float]) -> list[float]:
    """Sum counters over ranks (when a process group is up); also a barrier at the end of the run."""
    if not distributed:
        return counts
    import torch.distributed as dist

    t = torch.tensor(counts, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def tokenize(
    files: list[InputFile],
    output: str | os.PathLike,
    codec: Any,
    options: TokenizeOptions | None = None,
    unmatched: list[str] | None = None,
    ctx: RankContext | None = None,
) -> TokenizeSummary:
    """Tokenize ``files`` (sorted, as from `codec.audio.scan_inputs`) into the store at ``output``.

    Under a multi-process launcher pass ``ctx=RankContext.from_env()``: this process then handles its
    share and writes as ``r<rank>``. ``unmatched`` inputs are recorded as failures (by rank 0).
    Raises `TokenizeUsageError` when the run cannot start; bad files never raise.
    """
    options = options or TokenizeOptions()
    ctx = ctx or RankContext()
    started = time.perf_counter()
    num_codebooks = options.num_codebooks or codec.num_codebooks
    if not 1 <= num_codebooks <= codec.num_codebooks:
        raise TokenizeUsageError(
            f"--num-codebooks must be in [1, {codec.num_codebooks}] for codec {codec.codec_id}"
        )
    distributed = ctx.init_process_group()
    if ctx.world_size > 1:
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", ctx.world_size) or 1)
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))  # share the cores, don't fight
    output = Path(output)
    store = None
    if ctx.rank == 0:
        store = open_or_create_store(output, codec, num_codebooks, options.codec_spec, ctx.writer)
    if distributed:
        import torch.distributed as dist

        dist.barrier()  # rank 0 made meta.json; a failure there ends the launch (others exit with it)
    elif ctx.rank > 0:
        wait_for_meta(output)
    if store is None:
        store = open_or_create_store(output, codec, num_codebooks, options.codec_spec, ctx.writer)
    mine = list(ctx.share(len(files)))
    with store:
        run = Tokenizer(codec, store, options, num_codebooks)
        run.plain_relpaths = _plain_relpaths(files)
        for spec in (unmatched or []) if ctx.rank == 0 else []:
            run.fail(spec, f"{display_path(spec)}: matched no audio files; check the path.")
        _loop(run, files, mine, options)
        counts = _reduce(
            ctx,
            distributed,
            [len(files) if ctx.rank == 0 else 0, run.stored, run.skipped, run.failed, run.seconds],
        )
        if distributed:
            with TokenStore.open(output, mode="r") as everything:  # all ranks are past all_reduce: done
                items_total = len(everything)
        else:
            items_total = len(store)
    ctx.close()
    return TokenizeSummary(
        store=str(output),
        codec_id=codec.codec_id,
        files=int(counts[0]) if distributed else len(mine),
        stored=int(counts[1]),
        skipped=int(counts[2]),
        failed=int(counts[3]),
        seconds=float(counts[4]),
        items_total=items_total,
        wall_seconds=time.perf_counter() - started,
        rank=ctx.rank,
        world_size=ctx.world_size,
    )


def _loop(run: Tokenizer, files: list[InputFile], mine: list[int], options: TokenizeOptions) -> None:
    """Read ahead in workers; encode windows of pending audio (bounded memory, batchable lengths) on the
    encoder threads while the next window is read, and append each window when it is done."""
    window_seconds = max(options.batch_seconds * 4, 1.0)
    bar = _progress(len(mine), options.quiet)
    started = time.perf_counter()
    threads = encoder_threads(run.codec)
    prepared_iter = read_ahead([files[i] for i in mine], run.read_options(), options.jobs)
    torch_threads = torch.get_num_threads()
    run.start_encoders(threads)
    try:
        for index, prepared in zip(mine, prepared_iter):
            run.add(index, prepared)
            if run.pending_seconds() >= window_seconds:
                run.submit()
                run.drain(keep=1)  # the window just submitted encodes while the next one is read
            bar.update(1)
            audio = run.seconds + run.pending_seconds()
            bar.set_postfix_str(
                f"{audio:.0f} s audio, {audio / max(time.perf_counter() - started, 1e-9):.0f} audio-s/s"
            )
        run.flush()
    finally:
        prepared_iter.close()
        run.stop_encoders()
        torch.set_num_threads(torch_threads)  # the encoder threads lowered the process-wide default
    bar.close()


__all__ = [
    "ChunkedStreamEncoder",
    "RankContext",
    "TokenizeOptions",
    "TokenizeSummary",
    "TokenizeUsageError",
    "Tokenizer",
    "encode_blocks",
    "open_or_create_store",
    "report_failure",
    "supports_streaming",
    "tokenize",
]
