"""The codec trainer's batches: every clip of a split held in memory, sampled statelessly.

A batch is a pure function of (seed, step, rank), so a resumed run sees exactly the batches of one that
never stopped, and `BatchPrefetcher` can build them ahead in forked processes. The augmentations
(mixtures over another kind, band limits, radio-like voices, random level) each draw from the step's
generator only when they are on, so runs without one keep their batches. `corpus_snapshot` fixes the
clips a run reads when it starts (``corpus.json`` in the run folder).
"""

from __future__ import annotations

import math
import multiprocessing.pool
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from codec.data.corpus import hours_table, read_manifest
from codec.data.decode import band_limit, mix_at_snr
from codec.nn.model import CodecConfig
from codec.train.config import TrainConfig

RUN_CORPUS = "corpus.json"


def corpus_snapshot(data_dir: str | Path, kinds: dict[str, float]) -> dict:
    """What a run trains and validates on: the train and valid clips of its kinds, and their hours.

    Written to ``<out_dir>/corpus.json`` when a run starts; a resumed run reads only these clips, so a
    corpus that grew meanwhile (a new ``make data`` stage) neither changes its batches nor its record.
    """
    rows = [r for r in read_manifest(data_dir) if r["kind"] in kinds]
    return {
        "data_dir": str(data_dir),
        "hours": hours_table(rows),
        **{split: sorted(r["path"] for r in rows if r["split"] == split) for split in ("train", "valid")},
    }


class ClipBank:
    """All clips of one split in memory as int16, sampled statelessly by (seed, step, rank)."""

    def __init__(
        self,
        data_dir: str | Path,
        split: str,
        sample_rate: int,
        kinds: dict[str, float],
        sources: dict[str, float] | None = None,
        paths: list[str] | None = None,
        bandlimit_prob: float = 0.0,
        bandlimit_rates: tuple[int, ...] = (),
        mix_prob: float = 0.0,
        mix_snr_db: tuple[float, float] = (0.0, 20.0),
        radio_prob: float = 0.0,
        radio_low_hz: tuple[float, float] = (300.0, 300.0),
        radio_high_hz: tuple[float, float] = (3400.0, 3400.0),
    ):
        """``paths``: only these clips of the split (a run's corpus snapshot), each of which must still exist.
        ``bandlimit_prob``: the fraction of drawn segments band-limited to one of ``bandlimit_rates``;
        ``mix_prob``: the fraction with a segment of another kind mixed under them, ``mix_snr_db`` (low,
        high) dB below; ``radio_prob``: the fraction band-passed and clipped like a radio voice, the pass band's
        edges drawn from ``radio_low_hz`` and ``radio_high_hz`` (low, high) Hz."""
        import soundfile as sf

        check_bandlimit(bandlimit_prob, bandlimit_rates, sample_rate)
        check_mix(mix_prob, mix_snr_db, radio_prob)
        check_radio_band(radio_low_hz, radio_high_hz, sample_rate)
        self.sample_rate = sample_rate
        self.bandlimit_prob, self.bandlimit_rates = (
            float(bandlimit_prob),
            tuple(int(r) for r in bandlimit_rates),
        )
        self.mix_prob, self.mix_snr_db = float(mix_prob), (float(mix_snr_db[0]), float(mix_snr_db[1]))
        self.radio_prob = float(radio_prob)
        self.radio_low_hz = (float(radio_low_hz[0]), float(radio_low_hz[1]))
        self.radio_high_hz = (float(radio_high_hz[0]), float(radio_high_hz[1]))

        rows = [r for r in read_manifest(data_dir) if r["split"] == split and r["kind"] in kinds]
        if paths is not None:
            missing = set(paths) - {r["path"] for r in rows}
            if missing:
                raise ValueError(
                    f"{data_dir}/manifest.jsonl lacks {len(missing)} {split} clips that this run trained on "
                    f"(e.g. {sorted(missing)[:3]}): restore them, or start a new run (another out_dir)"
                )
            keep = set(paths)
            rows = [r for r in rows if r["path"] in keep]
        sources = dict(sources or {})
        unknown = set(sources) - {r.get("source") for r in rows}
        if unknown:
            raise ValueError(f"source_weights names sources with no {split} clips: {sorted(unknown)}")
        if any(w < 0 for w in sources.values()):
            raise ValueError(f"source_weights must be >= 0, got {sources}")
        if not rows:
            raise ValueError(
                f"{data_dir}/manifest.jsonl has no {split} clips of kinds {sorted(kinds)}; run `make data`"
            )

        def read(row: dict) -> np.ndarray:
            wav, sr = sf.read(str(Path(data_dir) / row["path"]), dtype="int16", always_2d=True)
            if sr != sample_rate:
                raise ValueError(
                    f"{row['path']} is {sr} Hz, the corpus should be {sample_rate} Hz; rebuild it"
                )
            return wav.mean(axis=1).astype(np.int16)

        rows = sorted(rows, key=lambda r: r["path"])
        with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:  # libsndfile releases the GIL
            wavs = list(pool.map(read, rows))
        self.clips: dict[str, list[np.ndarray]] = {k: [] for k in kinds}
        clip_weights: dict[str, list[float]] = {k: [] for k in kinds}
        for r, wav in zip(rows, wavs):
            self.clips[r["kind"]].append(wav)
            # Longer clips are drawn more often; source_weights scale that per source.
            clip_weights[r["kind"]].append(len(wav) * float(sources.get(r.get("source"), 1.0)))
        self.kinds = [k for k in kinds if self.clips[k] and sum(clip_weights[k]) > 0]
        total = sum(kinds[k] for k in self.kinds)
        self.kind_probs = np.array([kinds[k] / total for k in self.kinds])
        weights = {k: np.array(clip_weights[k], dtype=np.float64) for k in self.kinds}
        self.clip_probs = {k: weights[k] / weights[k].sum() for k in self.kinds}
        self.seconds = {k: float(sum(len(c) for c in self.clips[k]) / sample_rate) for k in self.kinds}

    def _segment(self, kind: str, segment: int, rng: np.random.Generator) -> np.ndarray:
        """A random ``segment``-sample stretch (shorter if its clip is) of a clip of ``kind``."""
        probs = self.clip_probs[kind]
        clip = self.clips[kind][rng.choice(len(probs), p=probs)]
        start = int(rng.integers(0, max(1, len(clip) - segment + 1)))
        return clip[start : start + segment].astype(np.float32) / 32768.0

    def batch(self, batch_size: int, segment: int, seed: int, step: int, rank: int = 0) -> torch.Tensor:
        """``[B, segment]`` float32 in [-1, 1], a pure function of its arguments."""
        rng = np.random.default_rng([seed, step, rank])
        out = np.zeros((batch_size, segment), dtype=np.float32)
        for i in range(batch_size):
            k = rng.choice(len(self.kinds), p=self.kind_probs)
            piece = self._segment(self.kinds[k], segment, rng)
            # Each augmentation draws from rng only when it is on, so runs without it keep their batches.
            if self.mix_prob > 0 and len(self.kinds) > 1 and rng.random() < self.mix_prob:
                others = np.delete(np.arange(len(self.kinds)), k)
                other = others[
                    rng.choice(len(others), p=self.kind_probs[others] / self.kind_probs[others].sum())
                ]
                under = self._segment(self.kinds[other], segment, rng)
                piece = mix_at_snr(piece, under, float(rng.uniform(*self.mix_snr_db)))
            if self.bandlimit_prob > 0 and rng.random() < self.bandlimit_prob:
                rate = self.bandlimit_rates[int(rng.integers(len(self.bandlimit_rates)))]
                piece = band_limit(piece, self.sample_rate, rate)
            if self.radio_prob > 0 and rng.random() < self.radio_prob:
                drive = float(rng.uniform(1.0, 8.0))
                low, high = self.radio_low_hz[0], self.radio_high_hz[0]
                if self.radio_low_hz[1] > low or self.radio_high_hz[1] > high:  # (a fixed band draws nothing)
                    low, high = (
                        float(rng.uniform(*self.radio_low_hz)),
                        float(rng.uniform(*self.radio_high_hz)),
                    )
                piece = radio_voice(piece, self.sample_rate, drive=drive, low_hz=low, high_hz=high)
            # Random level (-30..-6 dBFS peak-relative range) so the codec sees quiet and loud audio.
            peak = max(float(np.abs(piece).max()), 1e-4)
            piece = piece / peak * 10 ** (rng.uniform(-24.0, -1.0) / 20)
            out[i, : len(piece)] = piece
        return torch.from_numpy(out)


_PREFETCH_BANK: ClipBank | None = None  # the bank that forked BatchPrefetcher workers inherit


def _prefetched_batch(args: tuple[int, int, int, int, int]) -> np.ndarray:
    return _PREFETCH_BANK.batch(*args).numpy()


class BatchPrefetcher:
    """``bank.batch`` for the steps ahead, built by ``workers`` forked processes.

    A batch is a pure function of (seed, step, rank), so the prefetched batches are exactly those built in
    the training process, and a resumed run still equals an uninterrupted one. At most ``2 * workers``
    batches wait at a time. The workers inherit the bank by fork (no copy of the clips is pickled) and run
    numpy only, never the device.
    """

    def __init__(self, bank: ClipBank, batch_size: int, segment: int, seed: int, rank: int, workers: int):
        if "fork" not in multiprocessing.get_all_start_methods():
            raise ValueError("train.loader_workers needs the fork start method (Linux); set it to 0 here")
        global _PREFETCH_BANK
        _PREFETCH_BANK = bank
        self.args = (batch_size, segment, seed)
        self.rank, self.depth = rank, 2 * workers
        self.pool = multiprocessing.get_context("fork").Pool(workers)
        self.pending: dict[int, multiprocessing.pool.AsyncResult] = {}

    def batch(self, step: int, stop: int) -> torch.Tensor:
        """The batch of ``step``; queues the steps after it, up to ``stop`` (exclusive)."""
        for ahead in range(step, min(step + self.depth, max(stop, step + 1))):
            if ahead not in self.pending:
                self.pending[ahead] = self.pool.apply_async(
                    _prefetched_batch, ((*self.args, ahead, self.rank),)
                )
        return torch.from_numpy(self.pending.pop(step).get())

    def close(self) -> None:
        self.pool.terminate()
        self.pool.join()


def batch_source(bank: ClipBank, cfg: TrainConfig, segment: int, rank: int) -> tuple[Callable, Callable]:
    """``(batch(step, stop), close())``: from a BatchPrefetcher when ``cfg.loader_workers``, else in-process."""
    if cfg.loader_workers > 0:
        prefetch = BatchPrefetcher(bank, cfg.batch_size, segment, cfg.seed, rank, cfg.loader_workers)
        return prefetch.batch, prefetch.close
    return (lambda step, stop: bank.batch(cfg.batch_size, segment, cfg.seed, step, rank)), (lambda: None)


def radio_voice(
    wav: np.ndarray, sample_rate: int, drive: float = 4.0, low_hz: float = 300.0, high_hz: float = 3400.0
) -> np.ndarray:
    """``wav`` as a radio or telephone line carries it: a ``low_hz``-``high_hz`` band-pass (4th-order
    Butterworth; the telephone band by default), then soft clipping ``tanh(drive * x)`` at full scale;
    ``drive`` 1 barely bends, 8 squares it off."""
    from scipy.signal import butter, sosfilt

    sos = butter(4, [low_hz, high_hz], btype="bandpass", fs=sample_rate, output="sos")
    band = sosfilt(sos, wav).astype(np.float32)
    peak = max(float(np.abs(band).max()), 1e-6)
    return (np.tanh(drive * band / peak) / math.tanh(drive) * peak).astype(np.float32)


def check_mix(mix_prob: float, snr_db, radio_prob: float) -> None:
    if not 0.0 <= mix_prob <= 1.0:
        raise ValueError(f"train.mix_prob must be within [0, 1], got {mix_prob}")
    if len(snr_db) != 2 or not snr_db[0] <= snr_db[1]:
        raise ValueError(f"train.mix_snr_db must be [low, high] dB with low <= high, got {list(snr_db)}")
    if not 0.0 <= radio_prob <= 1.0:
        raise ValueError(f"train.radio_prob must be within [0, 1], got {radio_prob}")


def check_radio_band(low_hz, high_hz, sample_rate: int) -> None:
    """The radio pass band's ranges: [low, high] Hz each, every low edge below every high edge, below
    Nyquist."""
    for name, pair in (("radio_low_hz", low_hz), ("radio_high_hz", high_hz)):
        if len(pair) != 2 or not 0.0 < pair[0] <= pair[1] < sample_rate / 2:
            raise ValueError(
                f"train.{name} must be [low, high] Hz with 0 < low <= high < {sample_rate / 2:g}, got {list(pair)}"
            )
    if not low_hz[1] < high_hz[0]:
        raise ValueError(
            f"train.radio_low_hz {list(low_hz)} must lie below train.radio_high_hz {list(high_hz)}"
        )


def check_bandlimit(prob: float, rates, sample_rate: int) -> None:
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"train.bandlimit_prob must be within [0, 1], got {prob}")
    if prob > 0 and (not rates or any(not 0 < int(r) < sample_rate for r in rates)):
        raise ValueError(
            f"train.bandlimit_rates must be sample rates below the codec's {sample_rate} Hz, got {list(rates)}"
        )


def segment_samples(model_cfg: CodecConfig, cfg: TrainConfig) -> int:
    """Training segment length in samples: ``segment_seconds`` rounded down to whole frames."""
    return int(cfg.segment_seconds * model_cfg.sample_rate) // model_cfg.hop_length * model_cfg.hop_length


def validation_batch(
    model_cfg: CodecConfig, cfg: TrainConfig, paths: list[str] | None = None
) -> torch.Tensor:
    """The 16 fixed validation segments (3 training segments long) of ``cfg.data_dir``'s valid split
    (only ``paths``, if given), drawn with ``cfg.kind_weights`` (not ``source_weights``) at ``cfg.valid_seed``,
    step 0: the same segments whatever the training seed."""
    bank = ClipBank(cfg.data_dir, "valid", model_cfg.sample_rate, cfg.kind_weights, paths=paths)
    return bank.batch(16, segment_samples(model_cfg, cfg) * 3, cfg.valid_seed, step=0)
