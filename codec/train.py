"""Train the audiotok codec with HF accelerate.

    accelerate launch -m codec.train --config configs/codec/default.yaml [--out runs/x] [--steps N]

Losses: multi-resolution mel + STFT reconstruction, RVQ commitment/codebook losses, and (after
``gan_start_step``) a multi-resolution complex-spectrogram discriminator with hinge and feature-matching
losses (codec/losses.py). Quantizer dropout trains every bitrate at once.

Exact resume: batches are a pure function of (seed, step, rank) (a stateless sampler over clips held in
memory), and the torch RNG is re-seeded from (seed, step) at each step, so a run resumed from a
checkpoint makes the same updates as one that never stopped. Checkpoints are written to a temporary
file and renamed (atomic), and loaded with ``weights_only=True``.

Codebook health (per-codebook perplexity, share of entries used, dead-code restarts) is logged every
``log_every`` steps to stdout and the accelerate trackers (tensorboard).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing.pool
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

from codec.corpus import hours_table, read_manifest
from codec.corpus_decode import band_limit, mix_at_snr
from codec.losses import (
    BandEnvelopeLoss,
    MultiResolutionComplexLoss,
    MultiResolutionDiscriminator,
    MultiResolutionMelLoss,
    MultiResolutionPhaseDerivativeLoss,
    MultiResolutionSTFTLoss,
    ReconstructionLoss,
    discriminator_loss,
    generator_losses,
)
from codec.model import AudiotokCodec, CodecConfig, CodecModel, CodecOutput, save_codec


@dataclass
class TrainConfig:
    data_dir: str = "data/corpus"
    out_dir: str = "runs/codec-default"
    segment_seconds: float = 1.0
    batch_size: int = 16
    steps: int = 20000
    lr: float = 1e-3
    lr_disc: float = 5e-4
    warmup_steps: int = 200
    weight_decay: float = 0.01
    grad_clip: float = 5.0
    gan_start_step: int = 2000
    # Steps from gan_start_step in which only the discriminator learns: a fresh discriminator meets a
    # trained generator (a GAN stage after reconstruction-only ones) before its gradients reach it.
    disc_warmup_steps: int = 0
    disc_channels: int = 24
    # Run the discriminators in fp32 even when mixed_precision autocasts the codec (on CPUs, bf16
    # convolutions of the discriminators were far slower than fp32 ones).
    disc_fp32: bool = False
    disc_periods: list = field(default_factory=list)  # HiFi-GAN period discriminators, e.g. [2, 3, 5, 7, 11]
    # Complex-spectrogram discriminators' window sizes; [] leaves only the period ones (far cheaper on a CPU).
    disc_windows: list = field(default_factory=lambda: [256, 512, 1024])
    # Discriminator weights to start from (``python -m codec.export RUN --disc FILE``; the same
    # disc_windows, disc_periods and disc_channels); ignored when resuming.
    init_disc_from: str = ""
    init_from: str = ""  # an exported codec folder to start from (fine-tuning); ignored when resuming
    # Let init_from have fewer encoder/decoder blocks than this model: the extra blocks start as the
    # identity (layer scale 0), so training starts from exactly the init's function with more capacity;
    # or a one-frame head where this model has head_upsample > 1 (ISTFTHead.load_coarser).
    init_grow: bool = False
    lambda_mel: float = 15.0
    lambda_stft: float = 2.0
    lambda_complex: float = 0.0  # compressed complex-spectrum MSE (phase-aware); 0 = off
    complex_windows: list = field(default_factory=lambda: [256, 512, 1024])
    lambda_phase: float = 0.0  # group-delay + instantaneous-frequency loss (phase coherence); 0 = off
    phase_windows: list = field(default_factory=lambda: [512, 1024])
    # Band-envelope loss (codec/losses.py BandEnvelopeLoss): log band energies averaged over
    # envelope_frames frames of 8 ms (40 and 104 ms by default), which the per-bin log losses leave short
    # on noise-like content. 0 = off. At 10 it raised the level but lowered PESQ-WB on unseen speech in a
    # paired ablation (configs/codec/history/cpu-refine-stage20-envelope.yaml).
    lambda_envelope: float = 0.0
    envelope_frames: list = field(default_factory=lambda: [5, 13])
    lambda_adv: float = 1.0
    lambda_fm: float = 2.0
    lambda_commit: float = 0.25
    lambda_codebook: float = 1.0
    dead_code_idle_steps: int = 200
    # Relative odds of keeping 1..num_codebooks stages for an item that quantizer dropout draws; [] =
    # uniform. E.g. more weight on 3 stages trains the 1.5 kbps rate more often.
    quantizer_dropout_weights: list = field(default_factory=list)
    kind_weights: dict = field(default_factory=lambda: {"speech": 0.6, "music": 0.25, "sfx": 0.15})
    # Per-source multipliers on how often a clip is drawn within its kind (manifest ``source``; missing = 1).
    source_weights: dict = field(default_factory=dict)
    # Fraction of training segments band-limited first (resampled to one of bandlimit_rates and back),
    # so that narrowband recordings (telephone, 11 kHz game and archive audio) are in the training mix;
    # the codec learns to reproduce them, not to invent their missing highs. 0 = off (the old batches).
    bandlimit_prob: float = 0.0
    bandlimit_rates: list = field(default_factory=lambda: [8000, 11025, 12000])
    # Fraction of segments with a segment of another kind mixed under them (speech over music or effects,
    # music over speech...) at a signal-to-background ratio drawn from mix_snr_db (dB): real recordings
    # are mixtures, and a codec trained on clean sources alone spends its bits badly on them. 0 = off.
    mix_prob: float = 0.0
    mix_snr_db: list = field(default_factory=lambda: [0.0, 20.0])
    # Fraction of segments made to sound like a radio or telephone line: band-passed and driven into soft
    # clipping (game voices, walkie-talkies, archive broadcasts). 0 = off. The pass band's edges are drawn
    # per segment from radio_low_hz and radio_high_hz ([low, high] Hz each; the default is the telephone
    # band, 300-3400 Hz, every time): real radio chains differ, and many cut far more of the lows.
    radio_prob: float = 0.0
    radio_low_hz: list = field(default_factory=lambda: [300.0, 300.0])
    radio_high_hz: list = field(default_factory=lambda: [3400.0, 3400.0])
    log_every: int = 25
    ckpt_every: int = 250
    eval_every: int = 500
    keep_checkpoints: int = 2
    seed: int = 0
    # The seed of the 16 validation segments, apart from ``seed`` so that runs with any training seed
    # validate on the same segments (runs before this field drew them at ``seed``, which was 0 until stage 22).
    valid_seed: int = 0
    gradient_accumulation_steps: int = 1
    mixed_precision: str = "no"
    time_limit_minutes: float = 0.0  # stop (with a checkpoint) after this much wall time; 0 = no limit
    num_threads: int = 0  # torch intra-op threads; 0 = torch's default
    # Processes that build the batches of the next steps while the device trains (BatchPrefetcher);
    # 0 = build each batch in the training process. On a GPU the in-process batch (Python per item, with
    # its augmentations) takes longer than the step itself.
    loader_workers: int = 0


def load_config(path: str | Path) -> tuple[CodecConfig, TrainConfig]:
    """YAML with ``model:`` (CodecConfig) and ``train:`` (TrainConfig) sections; unknown keys are errors."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    unknown = set(raw) - {"model", "train"}
    if unknown:
        raise ValueError(f"{path}: unknown sections {sorted(unknown)}; expected 'model' and 'train'")
    model = CodecConfig.from_dict(raw.get("model") or {})
    train_raw = raw.get("train") or {}
    known = {f.name for f in fields(TrainConfig)}
    if set(train_raw) - known:
        raise ValueError(f"{path}: unknown train keys {sorted(set(train_raw) - known)}")
    return model, TrainConfig(**train_raw)


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


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up then cosine decay to 10%."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


class CodebookHealth:
    """Per-codebook usage counts over a logging window -> perplexity and share of entries used."""

    def __init__(self, num_codebooks: int, codebook_size: int):
        self.counts = torch.zeros(num_codebooks, codebook_size, dtype=torch.long)

    def update(self, codes: torch.Tensor) -> None:
        """codes ``[B, K, T]``."""
        codes = codes.cpu()
        for k in range(codes.shape[1]):
            self.counts[k] += torch.bincount(codes[:, k].flatten(), minlength=self.counts.shape[1])

    def summary(self) -> dict[str, list[float]]:
        p = self.counts.double() / self.counts.sum(dim=1, keepdim=True).clamp(min=1)
        entropy = -(p * p.clamp(min=1e-12).log()).sum(dim=1)
        return {
            "perplexity": [round(float(x), 1) for x in entropy.exp()],
            "used": [round(float(x), 3) for x in (self.counts > 0).double().mean(dim=1)],
        }

    def reset(self) -> None:
        self.counts.zero_()


def save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    found = sorted(ckpt_dir.glob("step-*.pt"))
    return found[-1] if found else None


@torch.no_grad()
def evaluate(model: CodecModel, wav: torch.Tensor, mel_loss: MultiResolutionMelLoss) -> dict[str, float]:
    """Mel distance on fixed validation segments at several bitrates."""
    model.eval()
    out = {}
    K = model.config.num_codebooks
    for k in sorted({1, max(1, K // 4), max(1, K // 2), K}):
        rec = model(wav, num_codebooks=k).wav
        out[f"valid/mel_k{k}"] = float(mel_loss(rec, wav))
    model.train()
    return out


class GeneratorObjective(nn.Module):
    """The generator's loss without the adversarial terms: weighted reconstruction (mel and STFT from
    shared spectra), commitment and codebook losses, and the optional phase-aware and band-envelope
    losses."""

    def __init__(self, cfg: TrainConfig, mel: MultiResolutionMelLoss, stft: MultiResolutionSTFTLoss):
        super().__init__()
        self.cfg = cfg
        self.reconstruction = ReconstructionLoss(mel, stft)
        self.complex = MultiResolutionComplexLoss(tuple(cfg.complex_windows)) if cfg.lambda_complex else None
        self.phase = (
            MultiResolutionPhaseDerivativeLoss(tuple(cfg.phase_windows)) if cfg.lambda_phase else None
        )
        self.envelope = (
            BandEnvelopeLoss(mel.mels[0].sample_rate, frames=tuple(cfg.envelope_frames))
            if cfg.lambda_envelope
            else None
        )

    def forward(self, result: CodecOutput, wav: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """-> (weighted total, the named terms for the logs)."""
        c, rec = self.cfg, result.wav
        mel, stft = self.reconstruction(rec, wav)
        losses = {
            "mel": mel,
            "stft": stft,
            "commit": result.rvq.commit_loss,
            "codebook": result.rvq.codebook_loss,
        }
        total = c.lambda_mel * mel + c.lambda_stft * stft + c.lambda_commit * losses["commit"]
        total = total + c.lambda_codebook * losses["codebook"]
        if self.complex is not None:
            losses["complex"] = self.complex(rec, wav)
            total = total + c.lambda_complex * losses["complex"]
        if self.phase is not None:
            losses["phase"] = self.phase(rec, wav)
            total = total + c.lambda_phase * losses["phase"]
        if self.envelope is not None:
            losses["envelope"] = self.envelope(rec, wav)
            total = total + c.lambda_envelope * losses["envelope"]
        return total, losses


def log_line(step: int, logs: dict[str, float], per_step: float, perplexity: list, restarts: int) -> str:
    """One console line of the training log."""
    gan = f"adv {logs['train/adv']:.3f} fm {logs['train/fm']:.3f} " if "train/adv" in logs else ""
    disc = f"disc {logs['train/disc']:.3f} " if "train/disc" in logs else ""
    env = f"env {logs['train/envelope']:.3f} " if "train/envelope" in logs else ""
    return (
        f"step {step} mel {logs['train/mel']:.3f} stft {logs['train/stft']:.3f} {env}{gan}{disc}"
        f"| {per_step:.2f}s/step | ppl {perplexity} restarts {restarts}"
    )


def write_checkpoint(out: Path, step: int, modules: dict, history: list[dict], keep: int) -> None:
    """Atomically save ``modules``' state dicts and the step, keep the newest ``keep`` checkpoints, and
    append the history rows logged since the last checkpoint (so history.jsonl never runs ahead of them)."""
    ckpt_dir = out / "checkpoints"
    save_checkpoint(
        ckpt_dir / f"step-{step:07d}.pt", {**{k: m.state_dict() for k, m in modules.items()}, "step": step}
    )
    for old in sorted(ckpt_dir.glob("step-*.pt"))[:-keep]:
        old.unlink()
    with open(out / "history.jsonl", "a") as f:
        for row in history:
            f.write(json.dumps(row) + "\n")


def train(model_cfg: CodecConfig, cfg: TrainConfig, max_steps: int | None = None) -> Path:
    """Train (or resume) into ``cfg.out_dir``; returns the exported fp16 model folder.
    ``max_steps`` stops early (for tests and time-sliced runs) without changing the schedule."""
    from accelerate import Accelerator

    if cfg.gan_start_step < cfg.steps and not (cfg.disc_windows or cfg.disc_periods):
        raise ValueError(
            "train.gan_start_step is within the run but disc_windows and disc_periods are both empty"
        )
    dropout_weights = quantizer_dropout_odds(cfg.quantizer_dropout_weights, model_cfg)
    check_bandlimit(cfg.bandlimit_prob, cfg.bandlimit_rates, model_cfg.sample_rate)
    check_mix(cfg.mix_prob, cfg.mix_snr_db, cfg.radio_prob)
    check_radio_band(cfg.radio_low_hz, cfg.radio_high_hz, model_cfg.sample_rate)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    out = Path(cfg.out_dir)
    ckpt_dir = out / "checkpoints"
    accelerator = Accelerator(
        mixed_precision=cfg.mixed_precision,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        log_with="tensorboard",
        project_dir=str(out),
    )
    if accelerator.device.type == "cpu" and cfg.mixed_precision == "bf16" and cpu_has_native_bf16() is False:
        accelerator.print(
            "warning: train.mixed_precision is bf16 but this CPU has no AVX512-BF16 or AMX, so bf16 is emulated "
            "and each step runs about 12x slower than in fp32; pass --mixed-precision no (a resumed run then "
            "no longer equals an uninterrupted bf16 one)",
            flush=True,
        )
    if accelerator.is_main_process:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        run_config = {
            "model": asdict(model_cfg),
            "train": asdict(cfg),
            "device": describe_device(accelerator.device),
        }
        (out / "config.json").write_text(json.dumps(run_config, indent=2))
    torch.manual_seed(cfg.seed)
    torch.set_float32_matmul_precision("high")  # TF32 matmuls on GPUs that have them; no effect on CPU
    torch.backends.cudnn.benchmark = torch.cuda.is_available()  # fixed training shapes
    model = CodecModel(model_cfg)
    model.quantizer.dropout_weights = dropout_weights
    disc = MultiResolutionDiscriminator(
        tuple(cfg.disc_windows), cfg.disc_channels, tuple(cfg.disc_periods), fp32=cfg.disc_fp32
    )
    mel_loss = MultiResolutionMelLoss(model_cfg.sample_rate)
    stft_loss = MultiResolutionSTFTLoss()
    opt_g = torch.optim.AdamW(model.parameters(), cfg.lr, betas=(0.8, 0.99), weight_decay=cfg.weight_decay)
    opt_d = torch.optim.AdamW(
        disc.parameters(), cfg.lr_disc, betas=(0.8, 0.99), weight_decay=cfg.weight_decay
    )

    step = 0
    resume = latest_checkpoint(ckpt_dir)
    if resume is not None:
        state = torch.load(resume, map_location="cpu", weights_only=True)
        for name, module in {"model": model, "disc": disc, "opt_g": opt_g, "opt_d": opt_d}.items():
            module.load_state_dict(state[name])
        step = int(state["step"])
        accelerator.print(f"resumed from {resume} at step {step}")
    elif cfg.init_from:
        model.load_state_dict(initial_weights(cfg.init_from, model_cfg, grow=cfg.init_grow))
        if accelerator.is_main_process:  # the stages before this run, kept here in case init_from changes
            (out / LINEAGE).write_text(json.dumps(prior_stages(cfg.init_from), indent=2) + "\n")
        accelerator.print(f"initialised the codec from {cfg.init_from}")
    if resume is None and cfg.init_disc_from:
        disc.load_state_dict(initial_discriminator(cfg.init_disc_from, disc))
        accelerator.print(f"initialised the discriminators from {cfg.init_disc_from}")

    model, disc, opt_g, opt_d, mel_loss, stft_loss = accelerator.prepare(
        model, disc, opt_g, opt_d, mel_loss, stft_loss
    )
    raw_model: CodecModel = accelerator.unwrap_model(model)
    objective = GeneratorObjective(
        cfg, accelerator.unwrap_model(mel_loss), accelerator.unwrap_model(stft_loss)
    ).to(accelerator.device)
    snapshot_file = out / RUN_CORPUS
    if resume is None:
        snapshot = corpus_snapshot(cfg.data_dir, cfg.kind_weights)
        if accelerator.is_main_process:
            snapshot_file.write_text(json.dumps(snapshot) + "\n")
    elif snapshot_file.is_file():
        snapshot = json.loads(snapshot_file.read_text())
    else:  # a run started before runs recorded their corpus: it goes on with the manifest as it is now
        snapshot = {"train": None, "valid": None}
        accelerator.print(f"warning: {snapshot_file} is missing; resuming on the corpus as it is now")
    bank = ClipBank(
        cfg.data_dir,
        "train",
        model_cfg.sample_rate,
        cfg.kind_weights,
        cfg.source_weights,
        paths=snapshot["train"],
        bandlimit_prob=cfg.bandlimit_prob,
        bandlimit_rates=tuple(cfg.bandlimit_rates),
        mix_prob=cfg.mix_prob,
        mix_snr_db=tuple(cfg.mix_snr_db),
        radio_prob=cfg.radio_prob,
        radio_low_hz=tuple(cfg.radio_low_hz),
        radio_high_hz=tuple(cfg.radio_high_hz),
    )
    segment = segment_samples(model_cfg, cfg)
    valid_wav = validation_batch(model_cfg, cfg, paths=snapshot["valid"]).to(accelerator.device)
    accelerator.init_trackers("codec")
    accelerator.print(
        f"train audio (s): {bank.seconds}; params: {sum(p.numel() for p in raw_model.parameters()) / 1e6:.2f}M"
    )

    health = CodebookHealth(model_cfg.num_codebooks, model_cfg.codebook_size)
    restarts = 0
    t0, window_start = time.time(), time.time()
    stop_at = cfg.steps if max_steps is None else min(cfg.steps, max_steps)
    history = []
    next_batch, close_batches = batch_source(bank, cfg, segment, accelerator.process_index)
    # Wall-clock minutes in history.jsonl continue across resumes.
    time_offset = 0.0
    if (out / "history.jsonl").is_file():
        previous = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines() if x.strip()]
        time_offset = max((r["time_s"] for r in previous if r["step"] <= step), default=0.0)
    while step < stop_at:
        torch.manual_seed(cfg.seed * 1_000_003 + step)
        for group in opt_g.param_groups:
            group["lr"] = cfg.lr * lr_factor(step, cfg)
        for group in opt_d.param_groups:
            group["lr"] = cfg.lr_disc * lr_factor(step, cfg)
        wav = next_batch(step, stop_at).to(accelerator.device)
        use_gan = step >= cfg.gan_start_step

        with accelerator.accumulate(model, disc):
            result = model(wav)
            rec = result.wav
            if use_gan:
                d_loss = discriminator_loss(disc(wav), disc(rec.detach()))
                opt_d.zero_grad()
                accelerator.backward(d_loss)
                accelerator.clip_grad_norm_(disc.parameters(), cfg.grad_clip)
                opt_d.step()
            total, losses = objective(result, wav)
            if use_gan and step >= cfg.gan_start_step + cfg.disc_warmup_steps:
                adv, fm = generator_losses(disc(wav), disc(rec))
                losses.update(adv=adv, fm=fm)
                total = total + cfg.lambda_adv * adv + cfg.lambda_fm * fm
            if use_gan:
                losses["disc"] = d_loss
            opt_g.zero_grad()
            accelerator.backward(total)
            grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt_g.step()

        codes = result.rvq.codes.detach()
        health.update(codes)
        restarts += restart_dead_codes(raw_model, result.latents.detach(), codes, cfg, step)
        step += 1

        if step % cfg.log_every == 0 or step == stop_at:
            logs = {f"train/{k}": float(v.detach()) for k, v in losses.items()}
            logs.update({"train/grad_norm": float(grad_norm), "train/lr": opt_g.param_groups[0]["lr"]})
            h = health.summary()
            for k, (ppl, used) in enumerate(zip(h["perplexity"], h["used"])):
                logs[f"codebook/perplexity_{k}"], logs[f"codebook/used_{k}"] = ppl, used
            logs["codebook/restarts"] = restarts
            per_step = (time.time() - window_start) / cfg.log_every
            accelerator.print(log_line(step, logs, per_step, h["perplexity"], restarts), flush=True)
            if step % cfg.eval_every == 0 or step == stop_at:
                logs.update(evaluate(raw_model, valid_wav, accelerator.unwrap_model(mel_loss)))
                accelerator.print(
                    "  " + " ".join(f"{k} {v:.3f}" for k, v in logs.items() if k.startswith("valid/"))
                )
            accelerator.log(logs, step=step)
            history.append({"step": step, "time_s": round(time_offset + time.time() - t0, 1), **logs})
            health.reset()
            restarts = 0
            window_start = time.time()

        out_of_time = cfg.time_limit_minutes and (time.time() - t0) / 60 > cfg.time_limit_minutes
        if step % cfg.ckpt_every == 0 or step == stop_at or out_of_time:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                modules = {
                    "model": raw_model,
                    "disc": accelerator.unwrap_model(disc),
                    "opt_g": opt_g,
                    "opt_d": opt_d,
                }
                write_checkpoint(out, step, modules, history, cfg.keep_checkpoints)
                history = []
        if out_of_time:
            accelerator.print(f"time limit of {cfg.time_limit_minutes} min reached at step {step}")
            break

    close_batches()
    accelerator.end_training()
    export = out / "export"
    if accelerator.is_main_process:
        save_codec(
            raw_model, export, extra=stage_record(out, step, asdict(cfg), describe_device(accelerator.device))
        )
    return export


LINEAGE = "lineage.json"


def cpu_has_native_bf16() -> bool | None:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX); None where torch cannot tell.
    Without it, bf16 autocast on the CPU is emulated: 12.4x slower per step than fp32 on a 2-core AVX2 EPYC
    (BENCHMARKS.md, "Training step"), where an AVX512-BF16 Xeon ran it 1.3x faster than fp32."""
    probes = [
        getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    ]
    if not any(probes):
        return None
    return any(probe() for probe in probes if probe is not None)


def describe_device(device: torch.device) -> str:
    version = torch.__version__.split("+")[0]
    if device.type == "cuda":
        return f"1x {torch.cuda.get_device_name(device)} (torch {version})"
    return f"{os.cpu_count()}-core CPU (torch {version})"


def prior_stages(folder: str | Path) -> list[dict]:
    """The training stages that made an exported codec: its ``stages``, or one stage from its
    ``trained_steps`` and ``train`` for an export of a single run."""
    meta = json.loads((Path(folder) / "config.json").read_text())
    if "stages" in meta:
        return meta["stages"]
    if "trained_steps" in meta:
        return [{"steps": meta["trained_steps"], "device": "unrecorded", "train": meta.get("train", {})}]
    return []


def stage_record(run_dir: str | Path, step: int, train_cfg: dict, device: str) -> dict:
    """``config.json`` fields for an export of ``run_dir`` at ``step``. A fine-tuning run (one that
    started from ``init_from``) appends itself to the stages of its start, and ``trained_steps`` counts
    them all, so a shipped codec records every stage that made it."""
    lineage = Path(run_dir) / LINEAGE
    stages = json.loads(lineage.read_text()) if lineage.is_file() else []
    if not stages:
        return {"trained_steps": step, "train": train_cfg}
    stages = stages + [{"steps": step, "device": device, "train": train_cfg}]
    return {"trained_steps": sum(int(s["steps"]) for s in stages), "stages": stages}


def initial_discriminator(path: str | Path, disc: nn.Module) -> dict[str, torch.Tensor]:
    """The fp32 state dict in the safetensors file ``path``, checked against ``disc``'s names and shapes."""
    from safetensors.torch import load_file

    theirs = {k: v.float() for k, v in load_file(str(path)).items()}
    ours = disc.state_dict()
    mismatched = sorted(
        k
        for k in ours.keys() | theirs.keys()
        if k not in theirs or k not in ours or theirs[k].shape != ours[k].shape
    )
    if mismatched:
        raise ValueError(
            f"{path} does not fit this run's discriminators ({len(mismatched)} tensors differ, e.g."
            f" {mismatched[0]}); use the disc_windows, disc_periods and disc_channels of the run that made it"
        )
    return theirs


def quantizer_dropout_odds(weights: list, model_cfg: CodecConfig) -> torch.Tensor | None:
    """``train.quantizer_dropout_weights`` checked against the model: None (uniform) or K odds."""
    if not weights:
        return None
    K = model_cfg.num_codebooks
    if model_cfg.quantizer != "factorized":
        raise ValueError("train.quantizer_dropout_weights needs the factorized quantizer")
    if len(weights) != K or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(
            f"train.quantizer_dropout_weights needs {K} odds >= 0 (one per stage count 1..{K}) with a "
            f"positive sum, got {weights}"
        )
    return torch.tensor([float(w) for w in weights])


def initial_weights(
    folder: str | Path, model_cfg: CodecConfig, grow: bool = False
) -> dict[str, torch.Tensor]:
    """The fp32 state dict of an exported codec whose model config equals ``model_cfg``. With ``grow``,
    ``model_cfg`` may have more encoder and decoder blocks than the export (nothing else may differ):
    the export's blocks come first, the extra ones are freshly initialised with layer scale 0, so each
    is the identity and the grown model computes exactly what the export does. It may also have a finer
    iSTFT head (``head_upsample`` r where the export has 1), set by ``ISTFTHead.load_coarser``: the same
    codes, and for steady sounds about the same output, at r times the synthesis time resolution."""
    start = AudiotokCodec.from_pretrained(folder)
    theirs, ours = asdict(start.model.config), asdict(model_cfg)
    diff = {k: (theirs[k], ours[k]) for k in ours if ours[k] != theirs[k]}
    growable = {"encoder_layers", "decoder_layers", "head_upsample"}
    if not diff:
        return start.model.state_dict()
    finer_head = ours["head_upsample"] == theirs["head_upsample"] or theirs["head_upsample"] == 1
    if not grow or set(diff) - growable or any(ours[k] < theirs[k] for k in diff) or not finer_head:
        hint = (
            " (set train.init_grow to add encoder/decoder blocks or refine a one-frame head)"
            if set(diff) <= growable and not grow
            else ""
        )
        raise ValueError(
            f"init_from {folder}: its model config differs from this run's (theirs, ours): {diff}{hint}"
        )
    grown = CodecModel(model_cfg)
    state = grown.state_dict()
    state.update(start.model.state_dict())
    if "head_upsample" in diff:  # the export's one-frame head, refined
        grown.head.load_coarser(start.model.head)
        state.update({k: v for k, v in grown.state_dict().items() if k.startswith("head.")})
    for part in ("encoder", "decoder"):
        for i in range(theirs[f"{part}_layers"], ours[f"{part}_layers"]):
            state[f"{part}.blocks.{i}.gamma"] = torch.zeros_like(state[f"{part}.blocks.{i}.gamma"])
    return state


def restart_dead_codes(
    model: CodecModel, latents: torch.Tensor, codes: torch.Tensor, cfg: TrainConfig, step: int
) -> int:
    """Dead-code restart for every stage, with candidates drawn from this step's residuals.
    latents ``[B, T, D]`` (encoder output), codes ``[B, K, T]``."""
    if cfg.dead_code_idle_steps <= 0 or not hasattr(model.quantizer, "stages"):
        return 0  # the library quantizer expires dead codes itself
    generator = torch.Generator().manual_seed(cfg.seed * 7919 + step)
    restarted = 0
    with torch.no_grad():
        residual = latents.flatten(0, 1)  # (B*T, D)
        for k, stage in enumerate(model.quantizer.stages):
            used = torch.zeros(stage.codebook_size, dtype=torch.bool)
            used[codes[:, k].flatten().cpu()] = True
            projected = stage.in_proj(residual)  # (B*T, d)
            restarted += stage.restart_dead_codes(used, projected.cpu(), cfg.dead_code_idle_steps, generator)
            residual = residual - stage.out_proj(stage.codebook(codes[:, k].flatten()))
    return restarted


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the audiotok codec (run under `accelerate launch`).")
    parser.add_argument(
        "--config", required=True, help="YAML with model: and train: sections (configs/codec/*.yaml)"
    )
    parser.add_argument("--out", help="override train.out_dir (checkpoints, logs, export)")
    parser.add_argument("--data", help="override train.data_dir (a corpus built by `audiotok data build`)")
    parser.add_argument("--steps", type=int, help="override train.steps (the schedule length)")
    parser.add_argument(
        "--max-steps", type=int, help="stop after this many steps without changing the schedule"
    )
    parser.add_argument("--time-limit", type=float, help="override train.time_limit_minutes")
    parser.add_argument("--threads", type=int, help="override train.num_threads (torch intra-op threads)")
    parser.add_argument("--batch-size", type=int, help="override train.batch_size")
    parser.add_argument(
        "--mixed-precision",
        choices=["no", "bf16", "fp16"],
        help="override train.mixed_precision (on a CPU without AVX512-BF16 or AMX, bf16 is emulated: use no)",
    )
    parser.add_argument(
        "--disc-warmup",
        type=int,
        help="override train.disc_warmup_steps (0: a speed probe of adversarial steps)",
    )
    args = parser.parse_args(argv)
    model_cfg, cfg = load_config(args.config)
    if args.out:
        cfg.out_dir = args.out
    if args.data:
        cfg.data_dir = args.data
    if args.steps:
        cfg.steps = args.steps
    if args.threads:
        cfg.num_threads = args.threads
    if args.batch_size:
        cfg.batch_size = args.batch_size
    if args.mixed_precision:
        cfg.mixed_precision = args.mixed_precision
    if args.time_limit is not None:
        cfg.time_limit_minutes = args.time_limit
    if args.disc_warmup is not None:
        cfg.disc_warmup_steps = args.disc_warmup
    export = train(model_cfg, cfg, max_steps=args.max_steps)
    print(f"exported fp16 model to {export}")


if __name__ == "__main__":
    main()
