"""Train the audio-language model on a paired set with HF accelerate.

    accelerate launch -m multimodal.train --config configs/multimodal/small.yaml --data data/alm --out DIR

- The loss: answer (and caption) cross-entropy of the text decoder, plus ``clip_weight`` x the symmetric
  InfoNCE of the alignment head on one caption per clip.
- AdamW with warm-up and cosine decay, gradient clipping, the token LM trainer's precision rule (bf16 only
  where the hardware computes it natively) and its atomic safetensors checkpoints (`tokenlm.train`); a
  checkpoint holds what trains (the frozen token LM is referenced, not copied). Batches are a pure function
  of (seed, step), so a resumed run ends with the weights of one that never stopped (tested).
- ``type_temperature`` T: each row's question type is drawn with probability proportional to its count to
  the power 1/T (T = 2: the square root), so rare types are seen more often; 1 keeps the set's own mix
  (a uniform clip, then one of its questions).
- Every ``eval_every`` steps: answer accuracy on held-out questions, audio-to-text R@1 among the valid
  captions and the losses, to tensorboard and ``history.jsonl``; a progress bar with the loss.
- ``--export DIR`` (or ``OUT/export``): the trained model as `AudioLanguageModel.from_pretrained` reads it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import yaml

from multimodal.data import ALMData, ALMDataError
from multimodal.model import ALMConfig
from multimodal.text import normalize_answer
from tokenlm.train import choose_precision, latest_checkpoint, lr_factor, read_checkpoint, write_checkpoint

CHECKPOINT_FORMAT = "audiotok-alm-checkpoint/1"


@dataclass
class ALMTrainConfig:
    """The ``train:`` section of a configs/multimodal YAML."""

    steps: int = 2000
    batch_size: int = 32
    lr: float = 1e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 100
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    clip_weight: float = 0.5  # weight of the contrastive loss
    caption_prob: float = 0.3  # share of rows whose target is a caption instead of an answer
    type_temperature: float = 1.0  # 1: questions as the set has them; T > 1: types drawn by count ** (1/T)
    vocab_size: int = 1000
    mixed_precision: str = "auto"
    seed: int = 0
    eval_every: int = 250
    eval_questions: int = 300
    log_every: int = 25
    ckpt_every: int = 250
    keep_checkpoints: int = 2
    num_threads: int = 0
    time_limit_minutes: float = 0.0


def load_config(path: str | Path) -> tuple[ALMConfig, ALMTrainConfig]:
    raw = yaml.safe_load(Path(path).read_text()) or {}
    unknown = sorted(set(raw) - {"model", "train", "encoder"})
    if unknown:
        raise ValueError(f"{path}: unknown sections {unknown}; expected model, train, encoder")
    model = ALMConfig.from_dict(raw.get("model") or {}, where=f"{path}: model")
    known = {f.name for f in fields(ALMTrainConfig)}
    bad = sorted(set(raw.get("train") or {}) - known)
    if bad:
        raise ValueError(f"{path}: train: unknown keys {bad}; known: {sorted(known)}")
    return model, ALMTrainConfig(**(raw.get("train") or {}))


@torch.no_grad()
def answer_items(alm, data: ALMData, items: list, batch: int = 64) -> list[str]:
    """Greedy answers, as text, to ``data``'s QA items from their cached states, ``batch`` at a time (MiniLM
    reads each question as written)."""
    out = []
    for s in range(0, len(items), batch):
        chunk = items[s : s + batch]
        states, mask = data.states([q.row for q in chunk])
        got = alm.net.generate(states, mask, [data.pieces(q.question) for q in chunk], max_new_tokens=8,
                               texts=[q.question for q in chunk])  # fmt: skip
        out += [alm.vocab.decode_text(g) for g in got]
    return out


@torch.no_grad()
def evaluate(alm, data: ALMData, max_questions: int, batch: int = 64) -> dict:
    """Answer accuracy (greedy, normalized exact match) overall and per type, and audio-to-text R@1 among
    (at most 100) clips' first captions."""
    net = alm.net
    net.eval()
    items = data.qa[:: max(1, len(data.qa) // max_questions)][:max_questions]
    right, per_type = 0, {}
    for q, answer in zip(items, answer_items(alm, data, items, batch)):
        ok = normalize_answer(answer) == normalize_answer(q.answer)
        right += ok
        t = per_type.setdefault(q.type, [0, 0])
        t[0], t[1] = t[0] + ok, t[1] + 1
    logs = {"eval/accuracy": right / max(1, len(items))}
    logs.update({f"eval/accuracy_{k}": v[0] / v[1] for k, v in sorted(per_type.items())})
    rows = [i for i, r in enumerate(data.rows) if r.get("captions")][:100]
    if len(rows) > 1:
        audio = net.audio_embedding(*data.states(rows))
        text = net.text_embedding([data.pieces(data.rows[i]["captions"][0]["text"]) for i in rows])
        best = (audio @ text.T).argmax(1)
        logs["eval/retrieval_r1"] = float((best == torch.arange(len(rows))).float().mean())
    net.train()
    return logs


def train(model_cfg: ALMConfig, cfg: ALMTrainConfig, data_root: str | Path, out_dir: str | Path,
          lm: str = "default", max_steps: int | None = None, quiet: bool = False) -> Path:  # fmt: skip
    """Train (or resume) into ``out_dir``; returns the exported model folder ``out_dir/export``."""
    from accelerate import Accelerator
    from tqdm import tqdm

    from multimodal.api import AudioLanguageModel

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    out, root = Path(out_dir), Path(data_root)
    device_type = "cuda" if torch.cuda.is_available() else "cpu"
    precision = choose_precision(cfg.mixed_precision, torch.device(device_type))
    accelerator = Accelerator(cpu=device_type == "cpu", mixed_precision=precision, log_with="tensorboard",
                              project_dir=str(out))  # fmt: skip
    vocab_dir = out / "vocab"
    if not (vocab_dir / "vocab.json").is_file() and accelerator.is_main_process:
        from multimodal.data import read_manifest
        from multimodal.text import train_vocabulary

        texts = [t for r in read_manifest(root, "train") for t in _texts(r)]
        train_vocabulary(texts, vocab_dir, 12, 1024, size=cfg.vocab_size)
    accelerator.wait_for_everyone()
    torch.manual_seed(cfg.seed)
    alm = AudioLanguageModel.build(model_cfg, vocab_dir / "vocab.json", lm=lm)
    net = alm.net
    train_data = ALMData(root, "train", alm.vocab, net.encoder, cfg.caption_prob, quiet=quiet,
                         type_temperature=cfg.type_temperature)  # fmt: skip
    valid = ALMData(root, "valid", alm.vocab, net.encoder, quiet=quiet)
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.98), weight_decay=cfg.weight_decay)
    step = 0
    resume = latest_checkpoint(out)
    if resume is not None:
        step, tensors = read_checkpoint(resume, optimizer, CHECKPOINT_FORMAT)
        net.load_trainable_state(tensors)
        accelerator.print(f"resumed from {resume} at step {step}")
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        run = {"model": asdict(model_cfg), "train": asdict(cfg), "data": str(root), "lm": lm,
               "precision": precision, "train_clips": len(train_data), "trainable_parameters":
               sum(p.numel() for p in params)}  # fmt: skip
        (out / "run.json").write_text(json.dumps(run, indent=2) + "\n")
    model, optimizer = accelerator.prepare(net, optimizer)
    accelerator.init_trackers("multimodal")
    stop = cfg.steps if max_steps is None else min(cfg.steps, max_steps)
    bar = tqdm(total=stop, initial=step, disable=quiet or not accelerator.is_main_process, unit="step",
               dynamic_ncols=True, file=sys.stderr)  # fmt: skip
    t0 = time.time()
    while step < stop:
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * lr_factor(step, cfg)
        b = train_data.batch(cfg.batch_size, cfg.seed, step, accelerator.process_index)
        audio = {k: v.to(accelerator.device) for k, v in train_data.audio(b["rows"]).items()}
        with accelerator.autocast():
            losses = model(audio, b["questions"], b["answers"], b["captions"], cfg.clip_weight)
        loss, gen, clip = losses["loss"], losses["answer"], losses["clip"]
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad()
        step += 1
        bar.update(1)
        if step % cfg.log_every == 0 or step == stop:
            logs = {"train/loss": loss.item(), "train/answer_loss": gen.item(), "train/clip_loss": clip.item(),
                    "train/lr": optimizer.param_groups[0]["lr"]}  # fmt: skip
            bar.set_postfix(answer=f"{gen.item():.3f}", clip=f"{clip.item():.3f}")
            if (step % cfg.eval_every == 0 or step == stop) and accelerator.is_main_process:
                logs.update(evaluate(alm, valid, cfg.eval_questions))
            accelerator.log(logs, step=step)
            if accelerator.is_main_process:
                with open(out / "history.jsonl", "a") as f:
                    f.write(json.dumps({"step": step, "time_s": round(time.time() - t0, 1), **logs}) + "\n")
        out_of_time = cfg.time_limit_minutes and (time.time() - t0) / 60 > cfg.time_limit_minutes
        if step % cfg.ckpt_every == 0 or step == stop or out_of_time:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                write_checkpoint(
                    out, step, net.trainable_state(), optimizer, cfg.keep_checkpoints, CHECKPOINT_FORMAT
                )
        if out_of_time:
            accelerator.print(f"time limit of {cfg.time_limit_minutes} min reached at step {step}")
            break
    bar.close()
    accelerator.end_training()
    export = out / "export"
    if accelerator.is_main_process:
        alm.provenance.update({"trained_steps": step, "data": str(root), "train_clips": len(train_data)})
        alm.save_pretrained(export)
    return export


def _texts(row: dict) -> list[str]:
    return [c["text"] for c in row.get("captions", [])] + [
        t for q in row.get("qa", []) for t in (q["question"], q["answer"])
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m multimodal.train", description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="a configs/multimodal YAML")
    p.add_argument("--data", default="data/alm", help="the paired set (make data-alm)")
    p.add_argument("--out", required=True, help="run folder: checkpoints, logs, export/")
    p.add_argument("--lm", default="default", help="the token LM that encodes the audio (default: shipped)")
    p.add_argument("--steps", type=int, help="override train.steps")
    p.add_argument("--max-steps", type=int, help="stop early without changing the schedule")
    p.add_argument("--threads", type=int, help="torch threads")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    try:
        model_cfg, cfg = load_config(args.config)
    except (OSError, ValueError) as e:
        print(f"multimodal.train: {e}", file=sys.stderr)
        return 2
    if args.steps:
        cfg.steps = args.steps
    if args.threads:
        cfg.num_threads = args.threads
    try:
        export = train(model_cfg, cfg, args.data, args.out, args.lm, args.max_steps, args.quiet)
    except ALMDataError as e:
        print(f"multimodal.train: {e}", file=sys.stderr)
        return 2
    print(f"exported {export}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
