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
import os
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from codec.nn.model import CodecConfig, CodecModel, CodecOutput, save_codec
from codec.train.batches import (
    RUN_CORPUS,
    ClipBank,
    batch_source,
    check_bandlimit,
    check_mix,
    check_radio_band,
    corpus_snapshot,
    segment_samples,
    validation_batch,
)
from codec.train.config import TrainConfig, load_config
from codec.train.losses import (
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
from codec.train.stages import (
    LINEAGE,
    initial_discriminator,
    initial_weights,
    prior_provenance,
    quantizer_dropout_odds,
    stage_record,
)


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
            (out / LINEAGE).write_text(json.dumps(prior_provenance(cfg.init_from)) + "\n")
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
        save_codec(raw_model, export, extra=stage_record(out, step, describe_device(accelerator.device)))
    return export


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
