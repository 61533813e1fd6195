"""Token robustness: how many of a codec's codes change under changes a listener would barely notice.

Each clip is loaded mono at 16 kHz (`EVAL_SR`, as in eval/codec_eval.py), encoded with all of the codec's
codebooks, perturbed (`PERTURBATIONS`), encoded again, and the two code arrays ``[K, T]`` are compared
frame by frame over their common length (`code_change`). A perturbation keeps the length and the rate,
so both have the same frames. Reported per perturbation, per kind and overall: the share of codes that
change in each codebook (changed codes over compared frames, pooled over the clips), and "at bitrate":
the mean share over the first k codebooks (k = 3, 6, 12 are 1.5, 3 and 6 kbps for the default codec).
Two independent, uniformly drawn codes differ with probability ``1 - 1/codebook_size``: a share near
that means the codebook keeps nothing of the clip's codes under that perturbation.

Design choices:

* ``gain+6dB`` is clip-safe: a clip whose peak would pass `CLIP_PEAK` after +6 dB is first scaled down
  so that it lands on `CLIP_PEAK`, and is then compared with that scaled original (`pair` returns both),
  so the row measures a clean 6 dB step, never clipping distortion.
* Shifts delay the clip (zeros in front, the end cut); the hop is 20 ms at 50 Hz, so 5 ms is a quarter frame.
* Noise is white Gaussian at the exact SNR over the clip (seed ``seed + clip index``: runs are repeatable).
* ``resample_8k`` drops everything above 4 kHz (audible on music and sfx), listed for contrast;
  ``opus_64k`` reuses eval/baselines.py and is skipped, with the reason, where opus-tools are missing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from codec.audio import AudioError, load_audio, resample_audio
from codec.tokens import Codec
from eval.baselines import OpusBaseline, unavailable_reason
from eval.metrics import KINDS, METRIC_SR

EVAL_SR = METRIC_SR
CLIP_PEAK = 0.99
OPUS_KBPS = 64
DEFAULT_BITRATES = (3, 6, 12)  # codebook counts: 1.5, 3 and 6 kbps for the default codec

PERTURBATIONS: dict[str, str] = {
    "identity": "the same samples encoded again (the encoder is deterministic when this is 0)",
    "gain+6dB": f"x1.995 (+6 dB); a clip that would pass a {CLIP_PEAK} peak is scaled down first and "
    "compared with that scaled original",
    "gain-6dB": "x0.501 (-6 dB)",
    "shift_1ms": "delayed 1 ms (1/20 of a 20 ms frame): zeros in front, the end cut",
    "shift_2.5ms": "delayed 2.5 ms (1/8 frame)",
    "shift_5ms": "delayed 5 ms (a quarter frame)",
    "noise_30dB": "white Gaussian noise at 30 dB SNR (fixed seed)",
    "noise_20dB": "white Gaussian noise at 20 dB SNR (fixed seed)",
    "resample_44k1": "resampled 16 -> 44.1 -> 16 kHz (soxr, codec.audio.resample_audio)",
    "resample_8k": "resampled 16 -> 8 -> 16 kHz: drops everything above 4 kHz (audible-ish)",
    "opus_64k": f"Opus {OPUS_KBPS} kbps hard-CBR round trip (opusenc/opusdec, eval/baselines.py)",
}


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    return x[:n] if len(x) >= n else np.pad(x, (0, n - len(x)))


def _shift(x: np.ndarray, sr: int, ms: float) -> np.ndarray:
    d = min(len(x), round(ms * sr / 1000))
    return np.concatenate([np.zeros(d, dtype=x.dtype), x[: len(x) - d]])


def _noise(x: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    power = float(np.mean(x.astype(np.float64) ** 2))
    noise = np.random.default_rng(seed).standard_normal(len(x))
    noise *= math.sqrt(power / 10 ** (snr_db / 10) / max(float(np.mean(noise**2)), 1e-30))
    return x + noise


def _resample_trip(x: np.ndarray, sr: int, mid_sr: int) -> np.ndarray:
    return _fit(resample_audio(resample_audio(x, sr, mid_sr), mid_sr, sr), len(x))


_OPS: dict[str, Callable[[np.ndarray, int, int], np.ndarray]] = {
    "identity": lambda x, sr, seed: x.copy(),
    "gain+6dB": lambda x, sr, seed: x * 10 ** (6 / 20),
    "gain-6dB": lambda x, sr, seed: x * 10 ** (-6 / 20),
    "shift_1ms": lambda x, sr, seed: _shift(x, sr, 1.0),
    "shift_2.5ms": lambda x, sr, seed: _shift(x, sr, 2.5),
    "shift_5ms": lambda x, sr, seed: _shift(x, sr, 5.0),
    "noise_30dB": lambda x, sr, seed: _noise(x, 30.0, seed),
    "noise_20dB": lambda x, sr, seed: _noise(x, 20.0, seed),
    "resample_44k1": lambda x, sr, seed: _resample_trip(x, sr, 44100),
    "resample_8k": lambda x, sr, seed: _resample_trip(x, sr, 8000),
    "opus_64k": lambda x, sr, seed: OpusBaseline(OPUS_KBPS).roundtrip(x, sr).numpy(),
}


def perturb(wave: np.ndarray, sr: int, name: str, seed: int = 0) -> np.ndarray:
    """Perturbed copy of mono float ``[S]`` audio at ``sr``: float32 ``[S]`` at ``sr`` (see `PERTURBATIONS`)."""
    if name not in _OPS:
        raise ValueError(f"unknown perturbation {name!r}; use one of {', '.join(PERTURBATIONS)}")
    x = np.asarray(wave, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"perturb takes mono audio [S], got shape {x.shape}")
    return np.ascontiguousarray(_OPS[name](x, sr, seed), dtype=np.float32)


def pair(wave: np.ndarray, sr: int, name: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(reference, perturbed): the reference is ``wave`` itself, except for ``gain+6dB`` on a clip that would
    pass `CLIP_PEAK`, where it is ``wave`` scaled so that the perturbed peak is exactly `CLIP_PEAK`."""
    x = np.asarray(wave, dtype=np.float32)
    if name == "gain+6dB":
        peak = float(np.abs(x).max(initial=0.0)) * 10 ** (6 / 20)
        if peak > CLIP_PEAK:
            x = (x * (CLIP_PEAK / peak)).astype(np.float32)
    return x, perturb(x, sr, name, seed)


def _changes(codes_a: np.ndarray, codes_b: np.ndarray) -> tuple[np.ndarray, int]:
    """(changed codes per codebook [K], compared frames) over the common length of two ``[K, T]`` arrays."""
    a, b = np.asarray(codes_a), np.asarray(codes_b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(f"code_change needs two [K, T] arrays with the same K, got {a.shape} and {b.shape}")
    t = min(a.shape[1], b.shape[1])
    return (a[:, :t] != b[:, :t]).sum(axis=1), t


def code_change(codes_a: np.ndarray, codes_b: np.ndarray) -> np.ndarray:
    """Share of frames whose code differs, per codebook: float ``[K]`` (NaN where no frame is in common)."""
    changed, t = _changes(codes_a, codes_b)
    return changed / t if t else np.full(len(changed), np.nan)


def _encode(codec: Codec, wave: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        tokens = codec.encode(torch.from_numpy(wave)[None, None], EVAL_SR)
    return tokens.item(0).cpu().numpy()  # [K, T]


def _load(clip: object, sr: int | None, crop_seconds: float | None) -> np.ndarray:
    """Mono float32 ``[S]`` at EVAL_SR from a path (read and validated by codec.audio) or an array at ``sr``."""
    if isinstance(clip, (np.ndarray, torch.Tensor)):
        x = np.asarray(clip, dtype=np.float32)
        x = x.mean(axis=0) if x.ndim == 2 else x
        if sr is None:
            raise ValueError("an array clip needs its sample rate")
        x = resample_audio(x, sr, EVAL_SR)
    else:
        x = load_audio(clip, target_sr=EVAL_SR, channel_policy="downmix").wav[0].numpy()
    x = x[: int(crop_seconds * EVAL_SR)] if crop_seconds else x
    return np.ascontiguousarray(x, dtype=np.float32)  # float32, so that `pair` hands it back as is


def _summary(changed: np.ndarray, frames: int, clips: int, bitrates: Sequence[int]) -> dict:
    share = changed / frames if frames else np.full(len(changed), np.nan)
    return {
        "per_codebook": [round(float(s), 6) for s in share],
        "at_bitrate": {str(k): round(float(np.mean(share[:k])), 6) for k in bitrates},
        "frames": int(frames),
        "clips": clips,
    }


def robustness(
    codec: Codec,
    clips: Sequence[tuple[object, int | None, str]],
    perturbations: Sequence[str] | None = None,
    bitrates: Sequence[int] = DEFAULT_BITRATES,
    seed: int = 0,
    crop_seconds: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Code change of ``codec`` under each perturbation (all of `PERTURBATIONS` by default), as JSON-able dict.

    clips: ``(path or mono array, sample rate (None for a path), kind)``; kind is speech, music or sfx.
    bitrates: codebook counts for the "at bitrate" means; those above the codec's are left out.
    A clip that cannot be read, or a perturbation that fails on a clip, is recorded in ``failures``.
    """
    names = list(perturbations or PERTURBATIONS)
    for name in names:
        if name not in PERTURBATIONS:
            raise ValueError(f"unknown perturbation {name!r}; use one of {', '.join(PERTURBATIONS)}")
    num_k = codec.num_codebooks
    bitrates = [k for k in bitrates if k <= num_k] or [num_k]
    skipped = {}
    if "opus_64k" in names and (reason := unavailable_reason(OpusBaseline(OPUS_KBPS))):
        skipped["opus_64k"] = reason
    # (perturbation, kind) -> [changed codes per codebook, compared frames, clips]
    acc = {(n, k): [np.zeros(num_k, dtype=np.int64), 0, 0] for n in names for k in KINDS}
    scaled, failures, kinds = 0, [], dict.fromkeys(KINDS, 0)
    for i, (clip, sr, kind) in enumerate(clips):
        label = str(clip) if not isinstance(clip, (np.ndarray, torch.Tensor)) else f"array #{i}"
        if kind not in KINDS:
            raise ValueError(f"{label}: kind {kind!r} is not one of {KINDS}")
        try:
            wave = _load(clip, sr, crop_seconds)
        except (AudioError, ValueError) as e:
            failures.append({"path": label, "perturbation": None, "error": str(e)})
            continue
        kinds[kind] += 1
        original = _encode(codec, wave)
        for name in (n for n in names if n not in skipped):
            try:
                ref, out = pair(wave, EVAL_SR, name, seed + i)
                diff, t = _changes(original if ref is wave else _encode(codec, ref), _encode(codec, out))
            except (RuntimeError, ValueError) as e:  # e.g. opusenc failing on this clip
                failures.append({"path": label, "perturbation": name, "error": str(e)})
                continue
            scaled += ref is not wave
            cell = acc[name, kind]
            cell[0], cell[1], cell[2] = cell[0] + diff, cell[1] + t, cell[2] + 1
        if progress:
            progress(f"[{i + 1}/{len(clips)}] {kind} {label}")
    results: dict[str, dict] = {n: {"skipped": r} for n, r in skipped.items()}
    for name in (n for n in names if n not in skipped):
        cells = [acc[name, k] for k in KINDS]
        row = {"overall": _summary(*(sum(c[j] for c in cells) for j in range(3)), bitrates)}
        row |= {k: _summary(*c, bitrates) for k, c in zip(KINDS, cells) if c[2]}
        if name == "gain+6dB":
            row["headroom_scaled_clips"] = scaled
        results[name] = row
    results = {n: results[n] for n in names}  # in the order asked for
    bits = math.log2(codec.codebook_size) * codec.frame_rate
    meta = {
        "codec_id": codec.codec_id,
        "num_codebooks": num_k,
        "codebook_size": codec.codebook_size,
        "frame_rate": codec.frame_rate,
        "chance_change": 1 - 1 / codec.codebook_size,
        "eval_sr": EVAL_SR,
        "crop_seconds": crop_seconds,
        "seed": seed,
        "items": {k: n for k, n in kinds.items() if n},
        "bitrates": [{"num_codebooks": k, "kbps": round(k * bits / 1000, 3)} for k in bitrates],
        "perturbations": {n: PERTURBATIONS[n] for n in names},
    }
    return {"meta": meta, "results": results, "failures": failures}


def _pct(x: float) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{100 * x:.1f}"


def to_markdown(report: dict) -> str:
    """The report as markdown: change share (%) overall per bitrate and codebook, then per kind and bitrate."""
    meta, results = report["meta"], report["results"]
    rates = [(str(b["num_codebooks"]), f"{b['kbps']:g} kbps") for b in meta["bitrates"]]
    num_k = meta["num_codebooks"]
    items = ", ".join(f"{k} {n}" for k, n in meta["items"].items()) or "none"
    crop = f"first {meta['crop_seconds']:g} s of each" if meta["crop_seconds"] else "whole clips"
    lines = [
        f"Token robustness of `{meta['codec_id']}`: share of codes (%) that change between a clip and its "
        f"perturbed copy, frame by frame; items {items}, {crop}, at {meta['eval_sr']} Hz. Chance (two random "
        f"codes differ): {_pct(meta['chance_change'])}%.",
        "",
        "| perturbation | "
        + " | ".join(r for _, r in rates)
        + " | "
        + " | ".join(f"cb{k + 1}" for k in range(num_k))
        + " |",
        "|---" * (1 + len(rates) + num_k) + "|",
    ]
    for name, row in results.items():
        if "skipped" in row:
            lines.append(f"| {name} | skipped: {row['skipped']} |")
            continue
        o = row["overall"]
        cells = [_pct(o["at_bitrate"][k]) for k, _ in rates] + [_pct(x) for x in o["per_codebook"]]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    kinds = [k for k in KINDS if k in meta["items"]]
    lines += [
        "",
        "By kind:",
        "",
        "| perturbation | " + " | ".join(f"{k} {r}" for k in kinds for _, r in rates) + " |",
        "|---" * (1 + len(kinds) * len(rates)) + "|",
    ]
    for name, row in results.items():
        if "skipped" not in row:
            cells = [_pct(row[k]["at_bitrate"][b]) if k in row else "n/a" for k in kinds for b, _ in rates]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Perturbations:", ""] + [f"- `{n}`: {d}" for n, d in meta["perturbations"].items()]
    if report["failures"]:
        lines += ["", f"{len(report['failures'])} failures (see the JSON report)."]
    return "\n".join(lines) + "\n"
