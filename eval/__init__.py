"""audiotok.eval: codec quality metrics, classical baselines and evaluation reports.

Nothing heavy is imported here; import the submodules you need:
``eval.metrics`` (mel/STFT distance, SI-SDR, PESQ-WB, STOI, `compute_metrics`), ``eval.baselines``
(Opus and Codec2 round trips), ``eval.codec_eval`` (`evaluate_codec`, `collect_items`), ``eval.cli``
(``audiotok eval codec``).
"""

__all__ = ["metrics", "baselines", "codec_eval", "cli"]
