"""``audiotok lm ...``: generate continuations, compress and decompress token stores with a token LM.

    audiotok lm generate --lm default --prompt a.wav --seconds 5 -o out.wav
    audiotok lm compress STORE -o FILE.lmz [--lm default]
    audiotok lm decompress FILE.lmz -o STORE [--lm default]

Training is ``accelerate launch -m tokenlm.train --config ... --data STORE --out DIR`` (`tokenlm.train`).
Heavy imports (torch, transformers) happen inside the handlers, so ``audiotok --help`` stays quick.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from codec.cli import UsageError

DEFAULT_LM = Path(__file__).resolve().parent / "weights" / "default"


def load_lm(spec: str | None) -> Any:
    """A token LM from a folder, or ``default`` (the shipped one)."""
    from tokenlm.model import TokenLM

    path = DEFAULT_LM if spec in (None, "default") else Path(spec)
    if not (path / "config.json").is_file():
        if spec in (None, "default"):
            raise UsageError(f"the default token LM is missing from {path}; pass --lm DIR (a trained export)")
        raise UsageError(f"{path}: no token LM here (no config.json); pass an export folder of tokenlm.train")
    try:
        return TokenLM.from_pretrained(path)
    except (ValueError, OSError) as e:
        raise UsageError(f"cannot load the token LM {path}: {e}") from None


def _codec_for(lm: Any, spec: str | None) -> Any:
    from codec.cli import load_codec

    spec = spec or lm.meta.get("codec") or "default"
    try:
        codec = load_codec(spec)
    except (ValueError, OSError) as e:
        raise UsageError(f"cannot load codec {spec!r}: {e}") from None
    if lm.meta.get("codec_id") and codec.codec_id != lm.meta["codec_id"]:
        raise UsageError(f"the LM models codec {lm.meta['codec_id']}'s tokens, but {spec!r} is "
                         f"{codec.codec_id}; pass the matching --codec")  # fmt: skip
    return codec


def cmd_generate(args: argparse.Namespace) -> int:
    import soundfile as sf
    import torch

    from codec.audio import AudioError, load_audio
    from codec.tokens import AudioTokens
    from tokenlm.generate import Sampling, generate

    lm = load_lm(args.lm)
    codec = _codec_for(lm, args.codec)
    K = lm.config.num_codebooks
    prompts, names = [], []
    for path in args.prompt or []:
        try:
            audio = load_audio(path, target_sr=codec.sample_rate)
        except AudioError as e:
            raise UsageError(str(e)) from None
        with torch.inference_mode():
            tokens = codec.encode(audio.wav[None], codec.sample_rate, num_codebooks=K)
        prompts.append(tokens.item(0))
        names.append(Path(path).stem)
    if not prompts:
        prompts, names = [torch.zeros(K, 0, dtype=torch.long)], ["unconditional"]
    new_frames = max(1, round(args.seconds * codec.frame_rate))
    try:
        sampling = Sampling(args.temperature, args.top_k, args.top_p, args.seed)
        outputs = generate(lm, prompts, new_frames, sampling, compiled=args.compile)
    except ValueError as e:
        raise UsageError(str(e)) from None
    out = Path(args.output)
    targets = (
        [out] if len(outputs) == 1 and out.suffix.lower() == ".wav" else [out / f"{n}.wav" for n in names]
    )
    report = []
    for codes, prompt, target in zip(outputs, prompts, targets):
        tokens = AudioTokens(
            codes[None], torch.tensor([codes.shape[1]]), codec.frame_rate, codec.codebook_size, codec.codec_id
        )
        with torch.inference_mode():
            wav = codec.decode(tokens)[0]  # (C, S)
        target.parent.mkdir(parents=True, exist_ok=True)
        sf.write(target, wav.clamp(-1, 1).T.float().numpy(), int(codec.sample_rate), subtype="PCM_16")
        report.append({"output": str(target), "prompt_seconds": prompt.shape[1] / codec.frame_rate,
                       "seconds": codes.shape[1] / codec.frame_rate})  # fmt: skip
    if args.json:
        print(json.dumps(report))
    else:
        for r in report:
            print(f"audiotok: wrote {r['output']}: {r['prompt_seconds']:.2f} s of prompt, then "
                  f"{r['seconds'] - r['prompt_seconds']:.2f} s generated", file=sys.stderr)  # fmt: skip
    return 0


def _bar(total: int, quiet: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="item", disable=quiet or not sys.stderr.isatty(), file=sys.stderr)


def _report(stats: Any, verb: str, path: str, as_json: bool) -> None:
    d = stats.to_dict()
    if as_json:
        print(json.dumps(d))
        return
    print(f"audiotok: {verb} {path}: {d['items']} items, {d['seconds']:.1f} s of audio; "
          f"{d['coded_bits_per_second']:.0f} bits/s against {d['raw_bits_per_second']:.0f} raw "
          f"({100 * d['saving']:.1f}% fewer bits)", file=sys.stderr)  # fmt: skip


def cmd_compress(args: argparse.Namespace) -> int:
    from codec.store import StoreError, TokenStore
    from tokenlm.compress import CompressError, compress_store

    lm = load_lm(args.lm)
    try:
        with TokenStore.open(args.store) as store:
            total = len(store)
    except StoreError as e:
        raise UsageError(str(e)) from None
    bar = _bar(total, args.quiet or args.json)
    try:
        stats = compress_store(lm, args.store, args.output, progress=bar.update)
    except CompressError as e:
        raise UsageError(str(e)) from None
    bar.close()
    _report(stats, "compressed", args.store, args.json)
    return 0


def cmd_decompress(args: argparse.Namespace) -> int:
    from tokenlm.compress import CompressError, decompress_file, read_header

    lm = load_lm(args.lm)
    try:
        header, _ = read_header(args.file)
        bar = _bar(len(header["items"]), args.quiet or args.json)
        stats = decompress_file(lm, args.file, args.output, progress=bar.update)
    except (CompressError, OSError) as e:
        raise UsageError(str(e)) from None
    bar.close()
    _report(stats, "decompressed", args.file, args.json)
    return 0


def register(subparsers: Any) -> None:
    """Add the ``lm`` group to the ``audiotok`` command."""
    group = subparsers.add_parser("lm", help="token LMs: generate, compress, decompress",
                                  description="Token language models over codec tokens.")  # fmt: skip
    sub = group.add_subparsers(dest="lm_command", metavar="LM_COMMAND", required=True)
    lm_help = "token LM: 'default' (the shipped one) or an export folder of tokenlm.train"

    p = sub.add_parser("generate", help="continue audio prompts with a token LM, decoded to wav",
                       description="Encode each prompt with the LM's codec, continue its tokens for --seconds, "
                       "and decode prompt + continuation to a wav.")  # fmt: skip
    p.add_argument("--lm", default="default", help=lm_help)
    p.add_argument("--prompt", action="append", metavar="AUDIO", help="prompt audio (repeatable: one batch)")
    p.add_argument("--seconds", type=float, default=5.0, help="seconds to generate after each prompt")
    p.add_argument(
        "-o", "--output", required=True, help="a .wav (one prompt) or a folder (one wav per prompt)"
    )
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (0 = greedy)")
    p.add_argument("--top-k", type=int, default=250, help="sample among the k most likely codes (0 = all)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1 = off)")
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same output")
    p.add_argument("--codec", default=None, help="codec to encode and decode with (default: the LM's)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the decode step (about 20 s once; faster for long outputs)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print what was written as JSON")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("compress", help="losslessly compress a token store with a token LM (.lmz)",
                       description="Range-code every item of a token store with the LM's probabilities.")  # fmt: skip
    p.add_argument("store", metavar="STORE", help="token store folder (made by audiotok tokenize)")
    p.add_argument("-o", "--output", required=True, metavar="FILE.lmz", help="compressed file to write")
    p.add_argument("--lm", default="default", help=lm_help)
    p.add_argument("--json", action="store_true", help="print the bit counts as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("decompress", help="rebuild a token store from an .lmz file",
                       description="Decode an .lmz file with the same LM into a new token store.")  # fmt: skip
    p.add_argument("file", metavar="FILE.lmz", help="file written by audiotok lm compress")
    p.add_argument("-o", "--output", required=True, metavar="STORE", help="new token store folder")
    p.add_argument("--lm", default="default", help=lm_help)
    p.add_argument("--json", action="store_true", help="print the bit counts as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_decompress)
