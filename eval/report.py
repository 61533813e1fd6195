"""``audiotok eval report``: one static HTML page of a set of runs, opened from disk (no network).

It shows what it finds: the tables of every result JSON in the run dirs (``report.json`` of ``eval codec``,
``robustness.json`` of ``eval robustness``, ``lm.json`` of ``eval lm``, ``probe.json`` of ``eval probe``,
``alm_eval.json`` of bench/alm_eval.py), training curves of every ``history.jsonl``, and, for the clips given, spectrograms and
players of the original and of the codec's reconstruction at each codebook count, and codebook usage (of
those clips' codes or of a token store). A section whose inputs are absent is left out with a one-line note.

Design: the tables reuse each report's own ``to_markdown`` (the numbers read as on the command line), cut
into blocks (heading, paragraph, list, table) that the jinja2 template ``templates/report.html.j2`` renders;
plots are matplotlib (Agg) PNGs and decoded clips 16-bit wavs, both beside ``index.html``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

STORE_ITEMS = 500  # codebook usage of a store reads at most this many items


@dataclass
class Section:
    """One part of the page; ``blocks`` empty means it is left out and ``note`` says why."""

    id: str
    title: str
    blocks: list[dict] = field(default_factory=list)
    note: str = ""


def _find(run_dirs: Sequence[Path], name: str) -> list[Path]:
    found = {p.resolve(): p for d in run_dirs for p in sorted(Path(d).rglob(name))}
    return list(found.values())


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path, name: str) -> dict:
    fig.savefig(out / name, dpi=80, bbox_inches="tight")
    _pyplot().close(fig)
    return {"type": "image", "src": name, "alt": name}


def markdown_blocks(text: str) -> list[dict]:
    """Cut the markdown of a ``to_markdown`` into heading, table, list and paragraph blocks."""
    blocks: list[dict] = []
    for chunk in re.split(r"\n\s*\n", text.replace("`", "").strip()):
        lines = chunk.splitlines()
        if lines[0].startswith("#"):
            level = len(lines[0]) - len(lines[0].lstrip("#"))
            blocks.append({"type": "heading", "level": min(level + 1, 5), "text": lines[0].lstrip("# ")})
            lines = lines[1:]
        if not lines:
            continue
        if all(line.startswith("|") for line in lines):
            rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
            rows = [r for r in rows if not all(c and set(c) <= set("-: ") for c in r)]  # |---|
            blocks.append({"type": "table", "headers": rows[0], "rows": rows[1:]})
        elif all(line.startswith("- ") for line in lines):
            blocks.append({"type": "list", "items": [line[2:] for line in lines]})
        else:
            blocks.append({"type": "para", "text": " ".join(lines)})
    return blocks


def _json_section(id: str, title: str, name: str, render, run_dirs: Sequence[Path], out: Path) -> Section:
    """A heading and ``render(report, out, index)``'s blocks for each file called ``name`` in the run dirs."""
    section, paths = Section(id, title), _find(run_dirs, name)
    for path in paths:
        section.blocks.append({"type": "heading", "level": 3, "text": str(path)})
        try:
            section.blocks += render(json.loads(path.read_text(encoding="utf-8")), out, len(section.blocks))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            why = f"could not read {path} as {name} ({type(e).__name__}: {e}); rewrite it with its command."
            section.blocks.append({"type": "para", "text": why})
    if not paths:
        section.note = f"no {name} in the run dirs."
    return section


def _codec_blocks(report: dict, out: Path | None, index: int) -> list[dict]:
    from eval.codec_report import CodecReport, SummaryRow

    summary = [SummaryRow(**row) for row in report["summary"]]
    return markdown_blocks(CodecReport(report["meta"], [], summary, report["failures"]).to_markdown())


def _robustness_blocks(report: dict, out: Path | None, index: int) -> list[dict]:
    from eval.robustness import to_markdown

    return markdown_blocks(to_markdown(report))


def _lm_blocks(report: dict, out: Path | None, index: int) -> list[dict]:
    from eval.lm_eval import to_markdown

    return markdown_blocks(to_markdown(report))


def _probe_blocks(report: dict, out: Path, index: int) -> list[dict]:
    """The table, then a bar chart of test accuracy per task and feature (linear / MLP), chance marked."""
    from eval.probe import to_markdown

    blocks = markdown_blocks(to_markdown(report))
    tasks, features = list(report["results"]), report["features"]
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.5), sharey=True)
    width = 0.8 / max(len(features), 1)
    x = np.arange(len(tasks))
    for ax, probe in zip(axes, ("linear", "mlp")):
        for j, feature in enumerate(features):
            accs = [100 * report["results"][t][feature][probe] for t in tasks]
            ax.bar(x + (j - (len(features) - 1) / 2) * width, accs, width, label=feature)
        chance = [100 * report["tasks"][t]["chance"] for t in tasks]
        ax.scatter(x, chance, marker="_", s=400, color="black", label="chance", zorder=3)
        ax.set_xticks(x, tasks, rotation=30, ha="right")
        ax.set_title(f"{probe} probe: test accuracy (%)")
    axes[1].legend(fontsize=7, loc="upper right")
    return blocks + [_save(fig, out, f"probe_{index}.png")]


def _flatten(value, prefix: str = "") -> dict[str, float]:
    """Every number under ``value`` by its dotted key path; booleans and text are left out."""
    if isinstance(value, bool) or value is None:
        return {}
    if isinstance(value, (int, float)):
        return {prefix: value} if math.isfinite(value) else {}
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = ((str(i), v) for i, v in enumerate(value))
    else:
        return {}
    flat: dict[str, float] = {}
    for key, item in items:
        flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _alm_blocks(report: dict, out: Path | None, index: int) -> list[dict]:
    """Rows: every number of a model's entry by key path (caption examples left out); columns: models."""
    models = report.get("models") or {"report": report}
    flat = {
        name: _flatten({k: v for k, v in entry.items() if k != "caption_examples"})
        for name, entry in models.items()
    }
    keys = list(dict.fromkeys(k for values in flat.values() for k in values))
    rows = [[k] + [f"{flat[m][k]:.4g}" if k in flat[m] else "" for m in flat] for k in keys]
    intro = f"Model: {report['model']}." if "model" in report else ""
    return [{"type": "para", "text": intro}, {"type": "table", "headers": ["key", *flat], "rows": rows}]


def _read_history(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line cut by a crash
        if isinstance(row, dict) and isinstance(row.get("step"), (int, float)):
            rows.append(row)
    return rows


def _curves_section(paths: list[Path], out: Path) -> Section:
    """One figure per history.jsonl: a panel per key prefix (train/, eval/, ...), its keys against step."""
    section = Section("curves", "Training curves")
    plt = _pyplot()
    for i, path in enumerate(paths):
        rows = _read_history(path)
        keys = [
            k
            for k in dict.fromkeys(k for r in rows for k in r)
            if k not in ("step", "time_s") and any(isinstance(r.get(k), (int, float)) for r in rows)
        ]
        if not keys:
            section.blocks.append({"type": "para", "text": f"{path}: no numeric keys against step."})
            continue
        groups: dict[str, list[str]] = {}
        for k in keys:
            groups.setdefault(k.split("/")[0] if "/" in k else "other", []).append(k)
        cols = min(3, len(groups))
        nrows = math.ceil(len(groups) / cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(5 * cols, 3 * nrows), squeeze=False)
        for ax, (group, names) in zip(axes.flat, groups.items()):
            for k in names:
                points = [(r["step"], r[k]) for r in rows if isinstance(r.get(k), (int, float))]
                ax.plot(*zip(*points), label=k.split("/", 1)[-1])
            ax.set_title(group)
            ax.set_xlabel("step")
            if len(names) <= 8:
                ax.legend(fontsize=7)
        for ax in list(axes.flat)[len(groups) :]:
            ax.axis("off")
        section.blocks += [
            {"type": "heading", "level": 3, "text": str(path)},
            _save(fig, out, f"curves_{i}.png"),
        ]
    if not paths:
        section.note = "no history.jsonl in the run dirs."
    return section


def _log_spectrogram(wav: np.ndarray) -> np.ndarray:
    """Power in dB, ``[F, T]``, from a 512-point Hann STFT with a hop of 128."""
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(wav, 256), 512)[::128]  # (T, 512)
    power = np.abs(np.fft.rfft(frames * np.hanning(512), axis=-1)) ** 2
    return 10 * np.log10(power.T + 1e-10)


def _spectrograms(waves: list[np.ndarray], titles: list[str], sr: int, out: Path, name: str) -> dict:
    """One panel per wave, on the colour scale of the first (the original): its top 80 dB."""
    fig, axes = _pyplot().subplots(
        len(waves), 1, figsize=(8, 1.8 * len(waves)), sharex=True, squeeze=False, layout="constrained"
    )
    top = _log_spectrogram(waves[0]).max()
    for ax, title, wave in zip(axes[:, 0], titles, waves):
        extent = (0, len(wave) / sr, 0, sr / 2000)
        ax.imshow(
            _log_spectrogram(wave),
            origin="lower",
            aspect="auto",
            cmap="magma",
            vmin=top - 80,
            vmax=top,
            extent=extent,
        )
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("kHz")
    axes[-1, 0].set_xlabel("seconds")
    return _save(fig, out, name)


def _clips_section(clips: Sequence[Path], codec, num_codebooks: Sequence[int], out: Path):
    """Spectrograms and players of each clip and its reconstructions; returns the section and the codes
    ``[K, T]`` of each clip at the largest codebook count (the last of ``num_codebooks``)."""
    import soundfile as sf
    import torch

    from codec import AudioError, load_audio

    section, codes, players, sr = (
        Section("clips", "Clips: original and reconstructions"),
        [],
        [],
        codec.sample_rate,
    )
    (out / "media").mkdir(parents=True, exist_ok=True)
    bits = math.log2(codec.codebook_size) * codec.frame_rate
    columns = ["original"] + [f"K={k} ({k * bits / 1000:g} kbps)" for k in num_codebooks]
    for i, clip in enumerate(clips):
        try:
            audio = load_audio(clip, target_sr=sr)
        except AudioError as e:  # the other clips go on
            section.blocks.append({"type": "para", "text": f"skipped {clip}: {e}"})
            continue
        waves = [audio.wav[0].numpy()]
        with torch.inference_mode():
            for k in num_codebooks:
                tokens = codec.encode(audio.wav, sr, num_codebooks=k)
                waves.append(codec.decode(tokens)[0, 0, : audio.num_samples].numpy())
        codes.append(tokens.codes[0, :, : int(tokens.lengths[0])].numpy())  # (K, T)
        srcs = [
            f"media/{i:02d}_{Path(clip).stem}_{c}.wav" for c in ["orig"] + [f"k{k}" for k in num_codebooks]
        ]
        for src, wave in zip(srcs, waves):
            sf.write(out / src, np.clip(wave, -1, 1), sr, subtype="PCM_16")
        players.append({"name": Path(clip).name, "srcs": srcs})
        section.blocks += [
            {"type": "heading", "level": 3, "text": str(clip)},
            _spectrograms(waves, columns, sr, out, f"spectrogram_{i}.png"),
        ]
    if players:
        section.blocks.append({"type": "players", "columns": columns, "rows": players})
    return section, codes


def _usage_section(codes: list[np.ndarray], codebook_size: int, source: str, out: Path) -> Section:
    """Entropy and used share per codebook, and each codebook's rank-frequency curve."""
    section = Section("usage", "Codebook usage")
    stacked = np.concatenate(codes, axis=1)  # (K, sum of T)
    counts = np.stack([np.bincount(row, minlength=codebook_size) for row in stacked.astype(np.int64)])
    probs = counts / max(stacked.shape[1], 1)
    entropy = -(probs * np.log2(np.where(probs > 0, probs, 1))).sum(axis=1)
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.5))
    left.bar(np.arange(1, len(entropy) + 1), entropy)
    left.axhline(math.log2(codebook_size), color="black", linestyle="--", label="log2(codebook size)")
    left.set(xlabel="codebook", ylabel="entropy (bits)", title="entropy per codebook")
    left.legend(fontsize=7)
    for k, p in enumerate(probs):
        used = np.sort(p)[::-1][: int((p > 0).sum())]
        right.plot(np.arange(1, len(used) + 1), used, label=f"cb{k + 1}")
    right.set(xscale="log", yscale="log", xlabel="code rank", ylabel="frequency", title="rank-frequency")
    right.legend(fontsize=6, ncol=2)
    rows = [
        [f"cb{k + 1}", str(int((c > 0).sum())), f"{h:.2f}", f"{2**h:.0f}"]
        for k, (c, h) in enumerate(zip(counts, entropy))
    ]
    section.blocks = [
        {
            "type": "para",
            "text": f"Codes of {source}: {stacked.shape[1]} frames, codebook size {codebook_size}.",
        },
        _save(fig, out, "codebook_usage.png"),
        {
            "type": "table",
            "headers": ["codebook", "codes used", "entropy (bits)", "perplexity"],
            "rows": rows,
        },
    ]
    return section


def _store_codes(store: Path) -> tuple[list[np.ndarray], int, str]:
    from codec import TokenStore

    opened = TokenStore.open(store)
    ids = opened.ids()[:STORE_ITEMS]
    codes = [np.asarray(opened.read(i)) for i in ids]
    return codes, opened.meta.codebook_size, f"the store {store} ({len(ids)} of {len(opened)} items)"


def build_report(
    run_dirs: Sequence[str | Path],
    out: str | Path,
    clips: Sequence[str | Path] | None = None,
    codec: str = "default",
    num_codebooks: Sequence[int] = (3, 6, 12),
    store: str | Path | None = None,
) -> Path:
    """Write ``out/index.html`` with its PNGs and ``out/media/*.wav``; returns the page's path."""
    import jinja2

    out, dirs = Path(out), [Path(d) for d in run_dirs]
    out.mkdir(parents=True, exist_ok=True)
    sections = [
        _json_section("codec", "Codec evaluation", "report.json", _codec_blocks, dirs, out),
        _json_section("robustness", "Token robustness", "robustness.json", _robustness_blocks, dirs, out),
        _json_section("lm", "Token LM", "lm.json", _lm_blocks, dirs, out),
        _json_section("probe", "Probes", "probe.json", _probe_blocks, dirs, out),
        _json_section("alm", "Audio-language model", "alm_eval.json", _alm_blocks, dirs, out),
        _curves_section(_find(dirs, "history.jsonl"), out),
    ]
    codes, codebook_size, source = [], 0, ""
    if clips:
        from codec import load_codec

        model = load_codec(codec)
        ks = sorted(num_codebooks)
        clip_section, codes = _clips_section([Path(c) for c in clips], model, ks, out)
        sections.append(clip_section)
        codebook_size, source = model.codebook_size, f"{len(clips)} clip(s) at K={ks[-1]}"
    else:
        sections.append(Section("clips", "Clips", note="no --clips given."))
    if store:
        codes, codebook_size, source = _store_codes(Path(store))
    if codes:
        sections.append(_usage_section(codes, codebook_size, source, out))
    else:
        sections.append(Section("usage", "Codebook usage", note="no clips or --store given."))
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("eval", "templates"), autoescape=True, undefined=jinja2.StrictUndefined
    )
    page = env.get_template("report.html.j2").render(sections=sections, run_dirs=[str(d) for d in dirs])
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
