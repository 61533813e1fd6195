"""Pretrain a token LM on token stores with HF accelerate.

    accelerate launch -m tokenlm.train --config configs/tokenlm/small.yaml --data STORE [--data STORE2] --out DIR

- AdamW, linear warm-up then cosine decay to ``min_lr_ratio``, gradient accumulation and clipping.
- Precision: ``mixed_precision: auto`` takes bf16 only where the hardware computes it natively (CUDA with
  bf16, or a CPU with AVX512-BF16 or AMX); on CPUs that emulate it (12x slower than fp32 in the codec
  trainer's measurement) it stays in fp32.
- Exact resume: batches are a pure function of (seed, step, rank) (`tokenlm.data.TokenData.batch`), so the
  data position is the step; a checkpoint holds the model, the optimizer, the step and the torch RNG, as
  safetensors + JSON (no pickle), written to a temporary folder and renamed (atomic). A resumed run ends
  with the weights of one that never stopped (tested).
- Every ``eval_every`` steps: loss, perplexity and bits per second of audio on the held-out items
  (`TokenData.heldout_windows`), logged to tensorboard through accelerate's trackers.
- A progress bar with tokens/s (code cells per second) and model FLOPs utilisation (against the
  device's peak: a table for known GPUs, a measured matmul rate on CPUs).
- Many processes: DDP through ``accelerate launch`` (tested with 2 CPU processes over gloo); FSDP and
  DeepSpeed through the accelerate config files in ``configs/accelerate/``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import yaml

from codec.train.loop import cpu_has_native_bf16
from tokenlm.data import DataError, TokenData, attention_mask, item_cells
from tokenlm.masking import mask_frames
from tokenlm.model import IGNORE, LMConfig, TokenLM, bits
from tokenlm.patterns import get_pattern

CHECKPOINT_FORMAT = "audiotok-tokenlm-checkpoint/1"


@dataclass
class TrainConfig:
    """The ``train:`` section of a configs/tokenlm YAML."""

    steps: int = 2000
    batch_size: int = 8  # rows per step and process (before accumulation)
    seq_steps: int = 512  # pattern steps per packed row (BOS steps included)
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    gradient_accumulation_steps: int = 1
    mixed_precision: str = "auto"  # auto | no | bf16 | fp16
    compile: bool = False  # torch.compile the model (measured in bench/tokenlm_train_speed.py)
    seed: int = 0
    holdout_permille: int = 20  # items held out for evaluation, by id
    eval_every: int = 250
    eval_max_items: int = 64
    log_every: int = 25
    ckpt_every: int = 250
    keep_checkpoints: int = 2
    num_threads: int = 0  # torch intra-op threads; 0 = torch's default
    time_limit_minutes: float = 0.0  # stop with a checkpoint after this much wall time; 0 = none


def load_config(path: str | Path) -> tuple[LMConfig, TrainConfig]:
    """YAML with ``model:`` (LMConfig) and ``train:`` (TrainConfig); unknown sections and keys are errors."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    unknown = set(raw) - {"model", "train"}
    if unknown:
        raise ValueError(f"{path}: unknown sections {sorted(unknown)}; expected 'model' and 'train'")
    model = LMConfig.from_dict(raw.get("model") or {}, where=f"{path}: model")
    train_raw = raw.get("train") or {}
    known = {f.name for f in fields(TrainConfig)}
    if set(train_raw) - known:
        raise ValueError(f"{path}: unknown train keys {sorted(set(train_raw) - known)}")
    return model, TrainConfig(**train_raw)


# ----------------------------------------------------------------------------------- hardware
def choose_precision(requested: str, device: torch.device) -> str:
    """``auto``: bf16 where the device computes it natively, else fp32 ("no")."""
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() is True else "no"


GPU_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "A10": 125.0}  # dense bf16


def peak_flops(device: torch.device, precision: str) -> float:
    """The device's peak FLOP/s for MFU: the datasheet's dense bf16 figure for known GPUs (half of it in
    fp32 is not assumed: TF32 differs per card, so fp32 MFU on GPUs is against the bf16 peak), else the
    best measured rate of a 1024 x 1024 fp32 matmul on this process's threads (what this CPU reaches,
    not its datasheet peak; other processes' load makes MFU look higher)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, tflops in GPU_PEAK_TFLOPS.items():
            if key in name:
                return tflops * 1e12
    a = torch.randn(1024, 1024)
    best = 0.0
    for _ in range(5):  # the best of a few tries: a shared machine's load only ever lowers it
        start = time.perf_counter()
        for _ in range(4):
            torch.mm(a, a)
        best = max(best, 4 * 2 * 1024**3 / (time.perf_counter() - start))
    return best


# ----------------------------------------------------------------------------------- schedule
def lr_factor(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


# --------------------------------------------------------------------------------- checkpoints
def _optimizer_to_files(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, plain = {}, {"param_groups": state["param_groups"], "state": {}}
    for pid, entry in state["state"].items():
        plain["state"][str(pid)] = {}
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{key}"] = value.detach().cpu().contiguous()
                plain["state"][str(pid)][key] = "tensor"
            else:
                plain["state"][str(pid)][key] = value
    return tensors, plain


def _optimizer_from_files(tensors: dict[str, torch.Tensor], plain: dict) -> dict:
    state = {}
    for pid, entry in plain["state"].items():
        state[int(pid)] = {k: tensors[f"{pid}.{k}"] if v == "tensor" else v for k, v in entry.items()}
    return {"state": state, "param_groups": plain["param_groups"]}


def write_checkpoint(out: Path, step: int, tensors: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
                     keep: int, fmt: str = CHECKPOINT_FORMAT) -> Path:  # fmt: skip
    """``out/checkpoints/step-NNNNNNN/``: model tensors and optimizer safetensors, the torch RNG and
    state.json (format ``fmt``); atomic by rename; keeps the last ``keep``."""
    from safetensors.torch import save_file

    final = out / "checkpoints" / f"step-{step:07d}"
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / "model.safetensors"))
    opt_tensors, plain = _optimizer_to_files(optimizer.state_dict())
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    save_file({"torch_rng": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
    state = {"format": fmt, "step": step, "optimizer": plain}
    (tmp / "state.json").write_text(json.dumps(state) + "\n")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in sorted((out / "checkpoints").glob("step-???????"))[:-keep]:
        shutil.rmtree(old)
    return final


def read_checkpoint(
    path: Path, optimizer: torch.optim.Optimizer, fmt: str = CHECKPOINT_FORMAT
) -> tuple[int, dict[str, torch.Tensor]]:
    """Restore the optimizer and the torch RNG from a `write_checkpoint` folder; -> (step, model tensors)."""
    from safetensors.torch import load_file

    state = json.loads((path / "state.json").read_text())
    if state.get("format") != fmt:
        raise ValueError(f"{path}: not a {fmt} checkpoint (it is {state.get('format')!r})")
    tensors = load_file(str(path / "model.safetensors"))
    optimizer.load_state_dict(
        _optimizer_from_files(load_file(str(path / "optimizer.safetensors")), state["optimizer"])
    )
    torch.set_rng_state(load_file(str(path / "rng.safetensors"))["torch_rng"])
    return int(state["step"]), tensors


def save_checkpoint(out: Path, step: int, lm: TokenLM, optimizer: torch.optim.Optimizer, keep: int) -> Path:
    """A token LM checkpoint (`write_checkpoint` of its whole state)."""
    return write_checkpoint(out, step, lm.state_dict(), optimizer, keep)


def latest_checkpoint(out: Path) -> Path | None:
    found = sorted(p for p in (out / "checkpoints").glob("step-???????") if (p / "state.json").is_file())
    return found[-1] if found else None


def load_checkpoint(path: Path, lm: TokenLM, optimizer: torch.optim.Optimizer) -> int:
    step, tensors = read_checkpoint(path, optimizer)
    lm.load_state_dict(tensors)
    return step


# ---------------------------------------------------------------------------------- evaluation
def _generator(seed: int, index: int, rank: int) -> torch.Generator:
    return torch.Generator().manual_seed(
        int(np.random.SeedSequence([seed, index, rank]).generate_state(1)[0])
    )


@torch.no_grad()
def evaluate(lm: TokenLM, data: TokenData, seq_steps: int, max_items: int, device: torch.device) -> dict:
    """Loss (nats per code), perplexity and bits per second of audio over the held-out items; for a masked
    LM, the loss and accuracy on its hidden frames (fixed masks)."""
    if not lm.causal:
        return evaluate_masked(lm, data, seq_steps, max_items, device)
    lm.eval()
    total_bits, codes, frames = 0.0, 0, 0
    for item, start, n in data.heldout_windows(seq_steps, max_items):
        cells = item_cells(lm.pattern, data.codes(item, start, n), data.N)
        logits = lm(
            cells.tokens[None].to(device),
            cells.books[None].to(device),
            cells.target_books[None].to(device),
            targets=cells.targets[None].to(device),
        )
        total_bits += float(bits(logits, cells.targets[None].to(device)))
        codes += int((cells.targets != IGNORE).sum())
        frames += n
    lm.train()
    if not codes:
        return {}
    nats = total_bits * math.log(2) / codes
    return {
        "eval/loss": nats,
        "eval/perplexity": math.exp(nats),
        "eval/bits_per_code": total_bits / codes,
        "eval/bits_per_second": total_bits / data.seconds(frames),
        "eval/raw_bits_per_second": data.raw_bits_per_second(),
        "eval/seconds": data.seconds(frames),
    }


@torch.no_grad()
def evaluate_masked(
    lm: TokenLM, data: TokenData, seq_steps: int, max_items: int, device: torch.device
) -> dict:
    lm.eval()
    nats, right, codes = 0.0, 0, 0
    for i, (item, start, n) in enumerate(data.heldout_windows(seq_steps, max_items)):
        cells = item_cells(lm.pattern, data.codes(item, start, n), data.N)
        batch = mask_frames(
            {"tokens": cells.tokens[None], "books": cells.books[None]}, _generator(0, i, 0), data.N
        )
        logits = lm(batch["tokens"].to(device), batch["books"].to(device), batch["target_books"].to(device))
        targets = batch["targets"].to(device)
        keep = targets != IGNORE
        nats += float(torch.nn.functional.cross_entropy(logits[keep], targets[keep], reduction="sum"))
        right += int((logits[keep].argmax(-1) == targets[keep]).sum())
        codes += int(keep.sum())
    lm.train()
    if not codes:
        return {}
    return {
        "eval/masked_loss": nats / codes,
        "eval/masked_accuracy": right / codes,
        "eval/masked_codes": codes,
    }


def init_weights(lm: TokenLM, path: str | Path, codec_id: str) -> dict:
    """Copy an exported token LM's weights into ``lm`` (in fp32, whatever the export's dtype); refused, with
    one line, if its model config or codec differ. Returns what the run starts from, for its records."""
    src = TokenLM.from_pretrained(path)
    theirs, ours = asdict(src.config), asdict(lm.config)
    if theirs != ours:
        diff = {k: (v, ours[k]) for k, v in theirs.items() if ours[k] != v}
        raise DataError(f"--init {path}: its model config differs from --config's (theirs, ours): {diff}")
    trained_on = src.meta.get("codec_id")
    if trained_on != codec_id:
        raise DataError(
            f"--init {path} was trained on codec {trained_on}, the --data stores are of {codec_id}"
        )
    lm.load_state_dict(src.state_dict())
    return {"from": str(path), "trained_steps": src.meta.get("trained_steps")}


# ---------------------------------------------------------------------------------------- train
def train(
    model_cfg: LMConfig,
    cfg: TrainConfig,
    data_paths: list[str],
    out_dir: str | Path,
    max_steps: int | None = None,
    quiet: bool = False,
    init: str | Path | None = None,
) -> Path:
    """Train (or resume) into ``out_dir``; returns the exported model folder ``out_dir/export``.
    ``max_steps`` stops early (tests, time-sliced runs) without changing the schedule. ``init`` starts a
    new run from an exported model's weights (a fresh optimizer and schedule; the model config must match);
    a checkpoint in ``out_dir`` still wins, so an interrupted fine-tune resumes."""
    from accelerate import Accelerator
    from tqdm import tqdm

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    out = Path(out_dir)
    device_type = "cuda" if torch.cuda.is_available() else "cpu"
    precision = choose_precision(cfg.mixed_precision, torch.device(device_type))
    accelerator = Accelerator(
        cpu=device_type == "cpu",  # without it, accelerate treats CPU ranks under torchrun as one process
        mixed_precision=precision,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        log_with="tensorboard",
        project_dir=str(out),
    )
    data = TokenData(
        data_paths,
        get_pattern(model_cfg.pattern),
        model_cfg.num_codebooks,
        model_cfg.codebook_size,
        cfg.holdout_permille,
    )
    rank, world = accelerator.process_index, accelerator.num_processes
    meta = {"codec_id": data.codec_id, "codec": data.codec_spec, "frame_rate": data.frame_rate}
    torch.manual_seed(cfg.seed)
    lm = TokenLM.build(model_cfg, meta)
    optimizer = torch.optim.AdamW(
        lm.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay
    )
    step = 0
    resume = latest_checkpoint(out)
    init_from = None
    if resume is not None:
        step = load_checkpoint(resume, lm, optimizer)
        before = json.loads((out / "run.json").read_text()) if (out / "run.json").is_file() else {}
        trained_on = before.get("codec_id", data.codec_id)
        init_from = before.get("init")  # what the run began as, whatever this launch passes
        if trained_on != data.codec_id:
            raise DataError(f"{out} trained on codec {trained_on}, the --data stores are of {data.codec_id}")
        accelerator.print(f"resumed from {resume} at step {step}")
    elif init is not None:
        init_from = init_weights(lm, init, data.codec_id)
        accelerator.print(f"initialized from {init}")
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        run = {"model": asdict(model_cfg), "train": asdict(cfg), "data": [str(p) for p in data_paths],
               "codec_id": data.codec_id, "init": init_from, "precision": precision, "processes": world,
               "shards": [len(data.shard(r, world)) for r in range(world)],
               "heldout_items": len(data.heldout_items), "too_short_items": data.too_short}  # fmt: skip
        (out / "run.json").write_text(json.dumps(run, indent=2) + "\n")
    model = torch.compile(lm) if cfg.compile else lm
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.init_trackers("tokenlm")
    stop = cfg.steps if max_steps is None else min(cfg.steps, max_steps)
    peak = peak_flops(accelerator.device, precision) * world
    flops_per_token = 3 * lm.flops_per_step(cfg.seq_steps // 2) / lm.num_streams  # forward + backward
    bar = tqdm(total=stop, initial=step, disable=quiet or not accelerator.is_main_process, unit="step",
               dynamic_ncols=True, file=sys.stderr)  # fmt: skip
    window_start, window_tokens = time.time(), 0
    t0 = time.time()
    while step < stop:
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * lr_factor(step, cfg)
        for micro in range(cfg.gradient_accumulation_steps):
            index = step * cfg.gradient_accumulation_steps + micro
            batch = data.batch(cfg.batch_size, cfg.seq_steps, cfg.seed, index, rank, world)
            if not lm.causal:  # the masks, like the crops, follow from (seed, step, rank)
                batch = mask_frames(batch, _generator(cfg.seed, index, rank), data.N)
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            with accelerator.accumulate(model):
                logits = model(batch["tokens"], batch["books"], batch["target_books"],
                               position_ids=batch["position_ids"],
                               attention_mask=attention_mask(batch["doc"], causal=lm.causal),
                               targets=batch["targets"])  # fmt: skip
                targets = batch["targets"]
                loss = torch.nn.functional.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE
                )
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                optimizer.zero_grad()
            window_tokens += int((targets != IGNORE).sum()) * world
        step += 1
        bar.update(1)
        if step % cfg.log_every == 0 or step == stop:
            elapsed = max(time.time() - window_start, 1e-9)
            tokens_per_s = window_tokens / elapsed
            mfu = tokens_per_s * flops_per_token / peak
            logs = {"train/loss": loss.item(), "train/lr": optimizer.param_groups[0]["lr"],
                    "train/tokens_per_s": tokens_per_s, "train/mfu": mfu}  # fmt: skip
            bar.set_postfix(loss=f"{loss.item():.3f}", tok_s=f"{tokens_per_s:.0f}", mfu=f"{100 * mfu:.1f}%")
            if step % cfg.eval_every == 0 or step == stop:
                if accelerator.is_main_process:
                    logs.update(evaluate(lm, data, cfg.seq_steps, cfg.eval_max_items, accelerator.device))
            accelerator.log(logs, step=step)
            if accelerator.is_main_process:
                with open(out / "history.jsonl", "a") as f:
                    f.write(json.dumps({"step": step, "time_s": round(time.time() - t0, 1), **logs}) + "\n")
            window_start, window_tokens = time.time(), 0
        out_of_time = cfg.time_limit_minutes and (time.time() - t0) / 60 > cfg.time_limit_minutes
        if step % cfg.ckpt_every == 0 or step == stop or out_of_time:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                save_checkpoint(out, step, lm, optimizer, cfg.keep_checkpoints)
        if out_of_time:
            accelerator.print(f"time limit of {cfg.time_limit_minutes} min reached at step {step}")
            break
    bar.close()
    accelerator.end_training()
    export = out / "export"
    if accelerator.is_main_process:
        lm.meta.update({"trained_steps": step, "data": [str(p) for p in data_paths]})
        if init_from:  # the model it started from, whose steps come on top of these
            lm.meta["init"] = init_from
        lm.save_pretrained(export)
    data.close()
    return export


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Pretrain a token LM on token stores (run under `accelerate launch`)."
    )
    parser.add_argument(
        "--config", required=True, help="YAML with model: and train: sections (configs/tokenlm/*.yaml)"
    )
    parser.add_argument("--data", action="append", required=True, metavar="STORE",
                        help="a token store made by `audiotok tokenize` (repeatable; all of one codec)")  # fmt: skip
    parser.add_argument("--out", required=True, help="run folder: checkpoints, logs, run.json, export/")
    parser.add_argument("--steps", type=int, help="override train.steps (the schedule length)")
    parser.add_argument(
        "--max-steps", type=int, help="stop after this many steps without changing the schedule"
    )
    parser.add_argument("--lr", type=float, help="override train.lr (the peak learning rate)")
    parser.add_argument("--threads", type=int, help="override train.num_threads")
    parser.add_argument(
        "--mixed-precision", choices=["auto", "no", "bf16", "fp16"], help="override train.mixed_precision"
    )
    parser.add_argument("--time-limit", type=float, help="override train.time_limit_minutes")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--init", metavar="DIR",
                        help="start from this exported token LM's weights (same model config; fresh optimizer and schedule)")  # fmt: skip
    args = parser.parse_args(argv)
    model_cfg, cfg = load_config(args.config)
    for flag, key in (("steps", "steps"), ("lr", "lr"), ("threads", "num_threads"), ("mixed_precision", "mixed_precision"),
                      ("time_limit", "time_limit_minutes")):  # fmt: skip
        if getattr(args, flag) is not None:
            setattr(cfg, key, getattr(args, flag))
    try:
        export = train(
            model_cfg, cfg, args.data, args.out, max_steps=args.max_steps, quiet=args.quiet, init=args.init
        )
    except DataError as e:
        print(f"tokenlm.train: error: {e}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"exported the token LM to {export}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
