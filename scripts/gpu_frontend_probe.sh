#!/usr/bin/env bash
# Does the encoder gain from seeing the STFT phase? Trains configs/codec/probes/frontend-{logmag,phase}.yaml
# from scratch for the same wall time (train.time_limit_minutes) on one GPU; $OUT receives each run's
# fp16 export (<variant>.safetensors, <variant>.json), its history and the log. Score them here with
# bench/codec_quality.py --codec <folder> (copy the pair into a folder as model.safetensors/config.json).
#
#   OUT=runs/probe-out scripts/gpu_frontend_probe.sh
set -euo pipefail
OUT=${OUT:-runs/probe-out}
DATA=${DATA:-.gpu/pack}
EXTRA=${EXTRA:-}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
for variant in logmag phase; do
    run=/tmp/probe-$variant
    rm -rf "$run"
    # shellcheck disable=SC2086
    python3 -m codec.train --config "configs/codec/probes/frontend-$variant.yaml" --data "$DATA" --out "$run" $EXTRA 2>&1 \
        | grep -v "^step [0-9]*[1-9]0 \|^step [0-9]*[05]50 " | tee -a "$OUT/probe.log"
    cp "$run/export/model.safetensors" "$OUT/$variant.safetensors"
    cp "$run/export/config.json" "$OUT/$variant.json"
    cp "$run/history.jsonl" "$OUT/$variant-history.jsonl"
done
ls -la "$OUT"
