"""The audio-language model on the paired set's test and unseen splits: QA, retrieval, zero-shot
classification, captions and speed, with the baselines in the same run.

    python bench/alm_eval.py [--model default] [--data data/alm] [--question-only runs/alm-question-only/export]
                             [--compare NAME=EXPORT,...] [--captions 200]

- QA: greedy answers, normalized exact match, per question type and overall, on the test split's questions
  in training wordings and, separately, in the held-out wordings; the question-only baseline (same
  architecture, audio withheld) and the majority answer (the train split's most common answer, overall
  and per question type) on the same questions.
- Unseen: the `unseen` split (real recordings the project never trains on, question wordings used nowhere
  else): yes/no questions about speech and music, counting and order.
- Retrieval among 100: the first 100 test clips and their first captions; audio-to-text and text-to-audio
  R@1 and R@5. Zero-shot classification: single-event test clips, ranked against one text per label.
- Captions: the first ``--captions`` test clips against all their reference captions, through
  `eval.caption_metrics` (aac-metrics); SPICE and SPIDEr only where the CoreNLP jars are installed.
- Speed: captions and answers per second from wav files through the whole API (codec included), batched.
- ``--compare``: other exports (connectors, encoder modes at equal budget) on the QA and retrieval columns.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import update_section  # noqa: E402
from eval.alm_eval import evaluate_alm, render  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "alm"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--data", default=str(ROOT / "data" / "alm"))
    p.add_argument("--question-only", help="export of configs/multimodal/question-only.yaml")
    p.add_argument("--compare", default="", help="NAME=EXPORT,... evaluated on QA and retrieval too")
    p.add_argument("--captions", type=int, default=200)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    compare = dict(pair.split("=", 1) for pair in filter(None, args.compare.split(",")))
    report = evaluate_alm(args.model, args.data, args.question_only, compare, args.captions)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "alm_eval.json").write_text(json.dumps(report, indent=2) + "\n")
    if not args.no_write:
        update_section("Audio-language model", render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
