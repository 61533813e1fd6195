"""The codec trainer's configuration: `TrainConfig` (the ``train:`` section of a YAML in configs/codec/)
and `load_config`, which reads ``model:`` into `CodecConfig` and ``train:`` into `TrainConfig` with
``yaml.safe_load``; unknown sections and keys are errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from codec.nn.model import CodecConfig


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
    # Discriminator weights to start from (``python -m codec.train.export RUN --disc FILE``; the same
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
    # paired ablation (commit a567517; BENCHMARKS.md, "Findings").
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
