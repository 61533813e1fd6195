"""Where a codec training run starts and what its export records.

`initial_weights` starts a run from an exported codec (optionally a grown one: more blocks, a finer
head, each starting as the export's function); `initial_discriminator` warms the discriminators;
`prior_provenance` and `stage_record` carry the count of stages and steps that made a codec from one
export to the next (``lineage.json`` in the run folder, ``provenance`` in the export's config.json).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from codec.nn.model import AudiotokCodec, CodecConfig, CodecModel

LINEAGE = "lineage.json"


def _lineage(stages: int, trained_steps: int) -> dict[str, int]:
    return {"stages": int(stages), "trained_steps": int(trained_steps)}


def prior_provenance(folder: str | Path) -> dict[str, int]:
    """How many stages and steps made an exported codec: its ``provenance``, or, for exports made before
    that field, the length and sum of its ``stages`` list, or its ``trained_steps`` as one stage."""
    meta = json.loads((Path(folder) / "config.json").read_text())
    return _as_lineage(meta)


def _as_lineage(record: dict | list) -> dict[str, int]:
    if isinstance(record, list):  # a lineage.json or `stages` of the old format: every stage in full
        return _lineage(len(record), sum(int(s["steps"]) for s in record))
    if "provenance" in record:
        return _lineage(record["provenance"]["stages"], record["provenance"]["trained_steps"])
    if isinstance(record.get("stages"), list):
        return _as_lineage(record["stages"])
    if isinstance(record.get("stages"), int):  # a lineage.json: {"stages", "trained_steps"}
        return _lineage(record["stages"], record["trained_steps"])
    if "trained_steps" in record:  # an export of one run, before `provenance`
        return _lineage(1, record["trained_steps"])
    return _lineage(0, 0)


def source_commit() -> str:
    """The git commit of the code that runs (short hash, ``+dirty`` with uncommitted changes), or
    "unknown" outside a git checkout."""
    import subprocess

    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True,
                                text=True, timeout=10)  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if commit.returncode != 0:
        return "unknown"
    return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def stage_record(run_dir: str | Path, step: int, device: str) -> dict:
    """The ``provenance`` of an export of ``run_dir`` at ``step``: the stages and steps that made the codec
    (a fine-tuning run adds itself to those of its start, kept in the run's ``lineage.json``), this stage's
    steps and device, the code's commit and the sha256 of the clip list the run trained on (its
    ``corpus.json``). The full training config stays in the run folder's ``config.json``."""
    run_dir = Path(run_dir)
    lineage = run_dir / LINEAGE
    prior = _as_lineage(json.loads(lineage.read_text())) if lineage.is_file() else _lineage(0, 0)
    record = {
        "stages": prior["stages"] + 1,
        "trained_steps": prior["trained_steps"] + step,
        "stage": {"steps": step, "device": device},
        "commit": source_commit(),
    }
    corpus = run_dir / "corpus.json"
    if corpus.is_file():
        record["corpus_sha256"] = hashlib.sha256(corpus.read_bytes()).hexdigest()
    return {"provenance": record}


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
