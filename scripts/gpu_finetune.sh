#!/usr/bin/env bash
# Fine-tune the codec in codec/weights/default on a GPU machine inside a wall-time budget; results land in $OUT.
#
#   OUT=runs/gpu-out TRAIN_SECONDS=400 scripts/gpu_finetune.sh
#
# CONFIG defaults to stage 2 of the shipped weights' recipe (configs/codec/recipe/02-gpu-finetune.yaml), which
# starts from the stage-1 weights (an 8-block decoder); to fine-tune today's weights, pass a config of their shape.
#
# 1. A speed probe (PROBE_STEPS steps of the real configuration, adversarial from the first step if it
#    has discriminators, so a discriminator warm-up does not make steps look cheap) measures seconds per step.
# 2. The run's schedule length is set from it (--steps), so warm-up and cosine decay end inside
#    TRAIN_SECONDS; train.time_limit_minutes (budget + 1 min) is only a backstop.
# 3. $OUT receives the fp16 export (config.json, model.safetensors, split in parts over 16 MB), history.jsonl, the logs and the
#    discriminators in fp16 (disc.safetensors: train.init_disc_from of a later adversarial run), and
#    cuda_check.json (bench/codec_cuda.py: CPU vs CUDA codes and decode, CUDA speed).
# If training breaks, its newest checkpoint is exported instead (and the log says so).
# Data: a pack from scripts/pack_corpus.py (the machine cannot build the corpus).
set -euo pipefail
OUT=${OUT:-runs/gpu-out}
TRAIN_SECONDS=${TRAIN_SECONDS:-420}
PROBE_STEPS=${PROBE_STEPS:-20}
CONFIG=${CONFIG:-configs/codec/recipe/02-gpu-finetune.yaml}
DATA=${DATA:-.gpu/pack}
RUN=${RUN:-/tmp/codec-gpu}
EXTRA=${EXTRA:-}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
rm -rf /tmp/codec-probe "$RUN"
python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available() and torch.cuda.get_device_name())"

# shellcheck disable=SC2086
python3 -m codec.train --config "$CONFIG" --data "$DATA" --out /tmp/codec-probe --max-steps "$PROBE_STEPS" --disc-warmup 0 $EXTRA 2>&1 | tee "$OUT/probe.log"
STEPS=$(python3 -c "
import json
rows = [json.loads(x) for x in open('/tmp/codec-probe/history.jsonl')]
a, b = rows[-2], rows[-1]
per_step = (b['time_s'] - a['time_s']) / (b['step'] - a['step'])
print(max(50, int($TRAIN_SECONDS / per_step)))")
LIMIT=$(python3 -c "print($TRAIN_SECONDS / 60 + 1)")
echo "schedule: $STEPS steps in about $TRAIN_SECONDS s (backstop $LIMIT min)" | tee -a "$OUT/train.log"

# shellcheck disable=SC2086
if ! python3 -m codec.train --config "$CONFIG" --data "$DATA" --out "$RUN" --steps "$STEPS" --time-limit "$LIMIT" $EXTRA 2>&1 | tee -a "$OUT/train.log"; then
  # Keep what the run made before it broke: its newest checkpoint (every train.ckpt_every steps).
  echo "training failed: exporting its newest checkpoint" | tee -a "$OUT/train.log"
  python3 -m codec.train.export "$RUN" --out "$RUN/export" 2>&1 | tee -a "$OUT/train.log"
fi
cp "$RUN/export/model.safetensors" "$RUN/export/config.json" "$RUN/history.jsonl" "$OUT/"
# Files over 16 MiB do not come back from the machine: split the weights, rejoin with
# `cat model.safetensors.part* > model.safetensors`.
if [ "$(stat -c %s "$OUT/model.safetensors")" -gt 16000000 ]; then
  split -b 15000000 -d "$OUT/model.safetensors" "$OUT/model.safetensors.part"
  rm "$OUT/model.safetensors"
fi
python3 -c "
import sys
from codec.train.export import export_discriminator
print('saved the discriminators to', export_discriminator(sys.argv[1], sys.argv[2]))" "$RUN" "$OUT/disc.safetensors"
# CUDA correctness and speed of the result (not fatal: the weights above are what matters).
python3 bench/codec_cuda.py --codec "$RUN/export" --json "$OUT/cuda_check.json" >/dev/null 2>>"$OUT/train.log" || echo "cuda check failed"
cat "$OUT/cuda_check.json" || true
ls -la "$OUT"
