#!/usr/bin/env bash
# System tools the evaluation needs: the Opus and Codec2 command-line codecs (baselines), flite (the WER test)
# a C++ compiler (visqol-python needs libsvm-official, which PyPI ships as source only) and headless Chromium
# with its driver (the browser test of `audiotok eval report`, driven by selenium).
# Installed with apt-get when missing and when we are root; otherwise the tests that need them skip.
set -u
need=()
command -v opusenc >/dev/null 2>&1 || need+=(opus-tools)
command -v c2enc >/dev/null 2>&1 || need+=(codec2)
command -v flite >/dev/null 2>&1 || need+=(flite)  # speaks the English sentence of the WER test
command -v g++ >/dev/null 2>&1 || need+=(g++)  # builds libsvm-official (visqol extra); torch.compile on CPU
command -v chromium >/dev/null 2>&1 || need+=(chromium)  # tests/eval/test_report_browser.py
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}") >/dev/null 2>&1 \
    || echo "warning: could not install ${need[*]}; the baselines and tests that need them will be skipped" >&2
else
  echo "note: ${need[*]} not installed (needs root); the baselines and tests that need them will be skipped" >&2
fi
exit 0
