"""Token LM generation speed: `tokenlm.generate` against transformers' ``generate()``, same model, same run.

    python bench/tokenlm_generate_speed.py [--lm PATH] [--new-tokens 256] [--batches 1,8] [--repeats 3]

The model is a one-stream (flatten) token LM, so it *is* a ``LlamaForCausalLM`` that ``generate()`` can
drive: the same weights, the same prompt (the flattened codes of a bundled clip), sampling with
temperature 1 and top-k 50, ``max_new_tokens`` equal to our new cells, a static KV cache on both sides
(``cache_implementation="static"`` for transformers). Ours samples each code within its codebook's
block; transformers samples over the whole vocabulary (the same work per step plus a mask). Figures are
generated tokens per second (batch x new tokens / wall time), medians of ``--repeats`` runs, after a
warm-up of each (for the compiled decode, the warm-up includes its compilation, once per batch size).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.codec_speed import timed  # noqa: E402
from bench.report import update_section  # noqa: E402
from tokenlm.data import item_cells  # noqa: E402
from tokenlm.generate import Sampling, generate  # noqa: E402
from tokenlm.model import LMConfig, TokenLM  # noqa: E402


def prompt_codes(lm: TokenLM, frames: int) -> torch.Tensor:
    """The first ``frames`` frames of the bundled speech clip through the shipped codec, ``[K, frames]``."""
    from codec import load_audio, load_codec

    codec = load_codec("default")
    audio = load_audio(ROOT / "examples" / "speech.wav", target_sr=codec.sample_rate)
    codes = codec.encode(audio.wav[None], codec.sample_rate, num_codebooks=lm.config.num_codebooks).item(0)
    return codes[:, :frames]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lm", default=None, help="a flatten token LM folder (default: a random small one)")
    parser.add_argument("--new-tokens", type=int, default=256, help="tokens (codes) generated per item")
    parser.add_argument("--prompt-frames", type=int, default=25, help="prompt length in codec frames")
    parser.add_argument("--batches", default="1,8", help="comma-separated batch sizes")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.lm:
        lm = TokenLM.from_pretrained(args.lm)
    else:  # the small size over 4 codebooks; speed does not depend on the weights
        lm = TokenLM.build(LMConfig(pattern="flatten", num_codebooks=4, hidden_size=256, num_layers=4,
                                    num_heads=4, num_kv_heads=4, intermediate_size=688, max_steps=1024))  # fmt: skip
    lm.eval()
    if lm.pattern.multi_stream:
        raise SystemExit("generate() needs a one-stream (flatten or coarse_first) LM")
    K = lm.config.num_codebooks
    prompt = prompt_codes(lm, args.prompt_frames)
    new_frames = args.new_tokens // K
    cells = item_cells(lm.pattern, prompt, lm.config.codebook_size)
    ids = lm._input_ids(cells.tokens[None], cells.books[None])  # BOS + the prompt's codes, [1, L]
    hf = lm.hf
    rows = [
        "| batch | tokens | ours tok/s | ours, compiled decode, tok/s | transformers generate() tok/s | ours / theirs | compiled / theirs |",
        "|---|---|---|---|---|---|---|",
    ]
    for batch in [int(b) for b in args.batches.split(",")]:
        prompts = [prompt] * batch
        sampling = Sampling(temperature=1.0, top_k=50, seed=0)
        ours = timed(lambda p=prompts, s=sampling: generate(lm, p, new_frames, s), args.repeats)
        compiled = timed(
            lambda p=prompts, s=sampling: generate(lm, p, new_frames, s, compiled=True), args.repeats
        )
        input_ids = ids.expand(batch, -1).contiguous()
        tokens = new_frames * K

        def theirs(input_ids=input_ids, tokens=tokens):
            with torch.no_grad():
                hf.generate(input_ids, do_sample=True, top_k=50, temperature=1.0, max_new_tokens=tokens,
                            min_new_tokens=tokens, cache_implementation="static", pad_token_id=lm.vocab.pad_id)  # fmt: skip

        hf_time = timed(theirs, args.repeats)
        made = batch * tokens
        rows.append(f"| {batch} | {tokens} | {made / ours:.0f} | {made / compiled:.0f} | {made / hf_time:.0f} | "
                    f"{hf_time / ours:.2f}x | {hf_time / compiled:.2f}x |")  # fmt: skip
    params = lm.num_parameters() / 1e6
    body = "\n".join([
        f"A flatten token LM of {params:.1f}M parameters ({lm.config.num_layers} layers of {lm.config.hidden_size}, "
        f"{K} codebooks), prompt: {args.prompt_frames} frames of examples/speech.wav ({cells.length} tokens), "
        f"{args.threads} threads, medians of {args.repeats} runs.", "", *rows,
    ])  # fmt: skip
    print(body)
    if not args.no_write:
        update_section("Token LM generation speed", body)


if __name__ == "__main__":
    main()
