"""audiotok.eval: codec quality metrics, classical baselines and evaluation reports (the top layer).

Nothing heavy is imported here; import the submodules you need:
``eval.metrics`` (mel/STFT distance, SI-SDR, PESQ-WB, STOI, `compute_metrics`), ``eval.baselines``
(Opus and Codec2 round trips), ``eval.codec_eval`` (`evaluate_codec`), ``eval.codec_items``
(`collect_items`), ``eval.codec_report`` (`CodecReport`), ``eval.cli`` (``audiotok eval codec``).
"""
