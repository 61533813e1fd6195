"""Token robustness on the corpus test split: the share of codes that change under small perturbations.

    python bench/token_robustness.py [--codec default] [--corpus data/corpus] [--split test] [--limit 60]
    python bench/token_robustness.py --limit 3 --no-write     # a smoke run

Perturbations and the measure: eval/robustness.py (gain +-6 dB, shifts of 1, 2.5 and 5 ms, white noise at
30 and 20 dB SNR, 16 -> 44.1 -> 16 kHz and 16 -> 8 -> 16 kHz resampling, Opus 64 kbps). Items: at most
``--limit`` per kind (evenly spaced, deterministic: eval/codec_items.py), the first ``--crop-seconds`` of
each. The pretrained adapters (EnCodec, DAC, Mimi) are measured too where their weights are already in the
local Hugging Face cache; nothing is downloaded, and a missing one is listed as "weights not present".
Writes bench/results/token_robustness.json and the section "Token robustness" of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import update_section  # noqa: E402
from codec.registry import load_codec  # noqa: E402
from eval.codec_items import collect_items  # noqa: E402
from eval.robustness import robustness, to_markdown  # noqa: E402

PRETRAINED = {  # label: hub id, looked up in the local cache only
    "EnCodec 24 kHz": "facebook/encodec_24khz",
    "DAC 16 kHz": "descript/dac_16khz",
    "Mimi": "kyutai/mimi",
}


def local_snapshot(hub_id: str) -> tuple[Path | None, str]:
    """(the cached snapshot folder of ``hub_id``, "") or (None, why not); never touches the network."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:
        return None, "weights not present (huggingface_hub is not installed)"
    try:
        return Path(snapshot_download(hub_id, local_files_only=True)), ""
    except (LocalEntryNotFoundError, OSError, ValueError):
        return (
            None,
            f"weights not present (`{hub_id}` is not in the local Hugging Face cache; not downloaded)",
        )


def _changes_at(row: dict, key: str) -> float:
    return row["overall"]["at_bitrate"][key]


def reading(report: dict) -> str:
    """A "Reading the table" paragraph from the measured numbers of one report."""
    meta, results = report["meta"], report["results"]
    rows = {n: r for n, r in results.items() if "skipped" not in r and n != "identity"}
    if not rows:
        return "Nothing was measured."
    low, high = str(meta["bitrates"][0]["num_codebooks"]), str(meta["bitrates"][-1]["num_codebooks"])
    low_kbps = f"{meta['bitrates'][0]['kbps']:g} kbps"
    pct = lambda x: f"{100 * x:.1f}%"  # noqa: E731
    order = sorted(rows, key=lambda n: _changes_at(rows[n], low))
    coarse_first = [n for n in rows if rows[n]["overall"]["per_codebook"][0] < _changes_at(rows[n], high)]
    first = np.mean([r["overall"]["per_codebook"][0] for r in rows.values()])
    last = np.mean([r["overall"]["per_codebook"][-1] for r in rows.values()])
    text = []
    if "identity" in results and "skipped" not in results["identity"]:
        zero = max(results["identity"]["overall"]["per_codebook"]) == 0
        text.append(
            "Encoding the same samples twice gives the same codes."
            if zero
            else "Encoding the same samples twice already changes some codes: the encoder is not deterministic."
        )
    text.append(
        f"At {low_kbps} (the first {low} codebooks) the stablest perturbation is `{order[0]}` "
        f"({pct(_changes_at(rows[order[0]], low))} of codes change) and the least stable `{order[-1]}` "
        f"({pct(_changes_at(rows[order[-1]], low))}); chance is {pct(meta['chance_change'])}."
    )
    why = (
        " A residual quantizer's later codebooks code what the earlier ones left: a small residual that a "
        "small change in the input moves by a large fraction of itself, and that a change in any earlier "
        "codebook replaces outright."
        if first < last
        else " Here the cascade of a residual quantizer (a changed code changes every later residual) does "
        "not show as a rise from coarse to fine."
    )
    text.append(
        f"Averaged over the perturbations, codebook 1 changes {pct(first)} and codebook {meta['num_codebooks']} "
        f"{pct(last)}, so the coarse codebooks are {'stabler' if first < last else 'no stabler'} than the fine "
        f"ones; codebook 1 changes less than the mean of the first {high} on {len(coarse_first)} of "
        f"{len(rows)} perturbations.{why}"
    )
    shifts = [n for n in ("shift_1ms", "shift_5ms") if n in rows]
    if len(shifts) == 2:
        text.append(
            f"A 1 ms shift changes {pct(_changes_at(rows['shift_1ms'], low))} at {low_kbps}, a quarter-frame "
            f"(5 ms) shift {pct(_changes_at(rows['shift_5ms'], low))}: the tokens are not shift-invariant "
            "below the 20 ms hop."
        )
    kinds = [k for k in ("speech", "music", "sfx") if all(k in r for r in rows.values())]
    if len(kinds) > 1:
        by_kind = {k: np.mean([r[k]["at_bitrate"][low] for r in rows.values()]) for k in kinds}
        best, worst = min(by_kind, key=by_kind.get), max(by_kind, key=by_kind.get)
        text.append(
            f"By kind, averaged over the perturbations at {low_kbps}: {best} is the most stable "
            f"({pct(by_kind[best])}), {worst} the least ({pct(by_kind[worst])})."
        )
    return " ".join(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codec", default="default", help="codec name or folder")
    parser.add_argument(
        "--corpus", default="data/corpus", help="corpus folder with manifest.jsonl (make data)"
    )
    parser.add_argument("--split", default="test", help="corpus split to measure")
    parser.add_argument("--limit", type=int, default=60, help="items per kind (evenly spaced, deterministic)")
    parser.add_argument(
        "--crop-seconds", type=float, default=6.0, help="first N seconds of each item (0: whole)"
    )
    parser.add_argument("--num-codebooks", default="3,6,12", help="'at bitrate' codebook counts")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (item i uses seed + i)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--no-pretrained", action="store_true", help="skip the EnCodec/DAC/Mimi lookup")
    parser.add_argument("--no-write", action="store_true", help="print only: no JSON, no BENCHMARKS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    items = collect_items(args.corpus, split=args.split, limit=args.limit)
    clips = [(path, None, kind) for path, kind in items]
    bitrates = [int(k) for k in args.num_codebooks.split(",")]
    crop = args.crop_seconds or None
    codecs = {args.codec: load_codec(args.codec)}
    absent = {}
    for label, hub_id in ({} if args.no_pretrained else PRETRAINED).items():
        folder, why = local_snapshot(hub_id)
        if folder is None:
            absent[label] = why
            continue
        try:
            codecs[label] = load_codec(folder)
        except (ValueError, OSError, ImportError) as e:
            absent[label] = f"could not load the cached weights ({e})"
    reports = {
        label: robustness(codec, clips, bitrates=bitrates, seed=args.seed, crop_seconds=crop)
        for label, codec in codecs.items()
    }
    sections = []
    for label, report in reports.items():
        report["meta"] |= {"source": args.corpus, "split": args.split, "limit_per_kind": args.limit}
        sections.append(f"### {label}\n\n{to_markdown(report)}\n**Reading the table.** {reading(report)}\n")
    sections.append(
        "### Pretrained codecs\n\n"
        + (
            "\n".join(f"- {label}: {why}" for label, why in absent.items())
            if absent
            else "- all measured above"
        )
        + "\n"
    )
    body = (
        f"Corpus `{args.corpus}` split `{args.split}`, at most {args.limit} items per kind, "
        + (f"first {crop:g} s of each. " if crop else "whole items. ")
        + "Share of codes (%) that change between an item and its perturbed copy, compared frame by frame; "
        'lower is more stable. The "kbps" columns average the first k codebooks.\n\n' + "\n".join(sections)
    )
    print(body)
    if not args.no_write:
        out = ROOT / "bench" / "results"
        out.mkdir(parents=True, exist_ok=True)
        (out / "token_robustness.json").write_text(
            json.dumps({"reports": reports, "absent": absent}, indent=2)
        )
        update_section("Token robustness", body)


if __name__ == "__main__":
    main()
