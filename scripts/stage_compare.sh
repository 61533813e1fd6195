#!/usr/bin/env bash
# Compare a candidate stage of the default codec with the shipped one, on every set the ship is judged on,
# before shipping it (nothing written to BENCHMARKS.md; logs go to stdout).
#   scripts/stage_compare.sh RUN_DIR [OLD_DIR] [--wer]      (OLD_DIR "" for the default with --wer)
# RUN_DIR: a training run (its newest checkpoint is exported to RUN_DIR/export), or an exported codec folder
# (config.json + model.safetensors, e.g. what scripts/gpu_finetune.sh brings back); OLD_DIR: the codec folder
# to compare with (default: a copy of codec/weights/default taken now, so shipping later does not change it).
# --wer: also the new codec's Whisper WER on English test speech and on warzone (compare with BENCHMARKS.md's
# tables for the default: the recogniser is deterministic). Needs make data and make unseen; about 7 minutes
# on 2 threads, plus 12 with --wer.
set -euo pipefail
run=${1:?usage: scripts/stage_compare.sh RUN_DIR [OLD_DIR] [--wer]}
old=${2:-}
wer=${3:-}
PY=${PY:-.venv/bin/python}
if [ -z "$old" ]; then
  old=$(mktemp -d /tmp/stage-old.XXXX)
  cp codec/weights/default/config.json codec/weights/default/model.safetensors "$old"/
fi
if [ -d "$run/checkpoints" ]; then
  $PY -m codec.train.export "$run" --out "$run/export"
  new=$run/export
else
  new=$run
fi
$PY bench/valid_mel.py "$old" "$new"
compare() { $PY bench/codec_compare.py "$old" "$new" --num-codebooks 3,12 --no-write "$@"; }
compare --kind speech --limit 20
compare --corpus data/unseen --limit 65
compare --corpus data/unseen-fillets --limit 80
compare --corpus data/unseen-warzone --limit 69
compare --corpus data/unseen-lp --limit 65
compare --corpus data/unseen-music --limit 65
compare --kind music --limit 20
compare --kind sfx --limit 20
compare --kind music --source 0ad-data --limit 20
if [ "$wer" = "--wer" ]; then
  wer_of() { $PY bench/codec_quality.py --codec "$new" --wer --crop-seconds 0 --limit 100 --baselines none --no-write "$@"; }
  wer_of --language en
  wer_of --corpus data/unseen-warzone
fi
