"""Token LM training throughput: tokenlm's packed step against a plain padded loop over LlamaForCausalLM.

    python bench/tokenlm_train_speed.py [--store data/tokens/train] [--steps 6] [--compile]

Both sides train the same model (a flatten token LM *is* a ``LlamaForCausalLM``), with AdamW, on the same
list of item crops drawn once from the store (random items, each cropped to what fits a row):
- plain: one crop per row, right-padded to ``seq_steps``, ``model(input_ids, attention_mask, labels)``,
  the loss transformers computes over the whole vocabulary;
- tokenlm: the same crops packed into rows back to back (each with its own positions and a mask that
  keeps it to itself), `TokenLM.forward` and the loss over each code's codebook block; ``--compile``
  adds a torch.compile'd leg.
The figure is real (not padding) tokens per second, over the same crops, after one warm-up step each;
the legs' steps alternate, so a shared machine's load falls on them alike.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import update_section  # noqa: E402
from tokenlm.data import TokenData, attention_mask, frames_fitting, item_cells  # noqa: E402
from tokenlm.model import IGNORE, LMConfig, TokenLM  # noqa: E402


def crops(data: TokenData, count: int, seq_steps: int, seed: int = 0) -> list[torch.Tensor]:
    rng = np.random.default_rng(seed)
    fit = frames_fitting(data.pattern, data.K, seq_steps)
    out = []
    for _ in range(count):
        item = data.train_items[int(rng.integers(len(data.train_items)))]
        n = min(item.frames, fit)
        start = int(rng.integers(0, item.frames - n + 1))
        out.append(data.codes(item, start, n))
    return out


def plain_rows(lm: TokenLM, pieces: list[torch.Tensor], seq_steps: int, batch: int) -> list[dict]:
    rows = []
    for c in pieces:
        cells = item_cells(lm.pattern, c, lm.config.codebook_size)
        ids = lm._input_ids(cells.tokens[None], cells.books[None])[0]  # (L,)
        labels = torch.cat([ids[1:], torch.tensor([IGNORE])])  # next-token labels, transformers style
        pad = seq_steps - ids.shape[0]
        rows.append((torch.cat([ids, torch.full((pad,), lm.vocab.pad_id)]), torch.cat([labels, torch.full((pad,), IGNORE)]),
                     torch.cat([torch.ones(ids.shape[0], dtype=torch.long), torch.zeros(pad, dtype=torch.long)])))  # fmt: skip
    batches = []
    for i in range(0, len(rows) - batch + 1, batch):
        group = rows[i : i + batch]
        ids, labels, mask = (torch.stack(x) for x in zip(*group))
        batches.append({"input_ids": ids, "labels": labels, "attention_mask": mask})
    return batches


def packed_rows(lm: TokenLM, pieces: list[torch.Tensor], seq_steps: int, batch: int) -> list[dict]:
    N = lm.config.codebook_size
    rows, current, used = [], [], 0
    for c in pieces + [None]:
        cells = None if c is None else item_cells(lm.pattern, c, N)
        if c is None or used + cells.length > seq_steps:
            pad = seq_steps - used
            row = {
                "tokens": torch.cat([x.tokens for x in current] + [torch.full((1, pad), N)], 1),
                "books": torch.cat([x.books for x in current] + [torch.full((1, pad), -1)], 1),
                "targets": torch.cat([x.targets for x in current] + [torch.full((1, pad), IGNORE)], 1),
                "target_books": torch.cat([x.target_books for x in current] + [torch.full((1, pad), -1)], 1),
                "position_ids": torch.cat([torch.arange(x.length) for x in current] + [torch.arange(pad)]),
                "doc": torch.cat(
                    [torch.full((x.length,), d) for d, x in enumerate(current)] + [torch.full((pad,), -1)]
                ),
            }
            rows.append(row)
            current, used = [], 0
        if cells is not None:
            current.append(cells)
            used += cells.length
    return [{k: torch.stack([r[k] for r in rows[i : i + batch]]) for k in rows[0]}
            for i in range(0, len(rows), batch) if len(rows[i : i + batch]) == batch]  # fmt: skip


def plain_step(lm: TokenLM, opt: torch.optim.Optimizer, b: dict) -> int:
    lm.hf(**b).loss.backward()
    opt.step()
    opt.zero_grad()
    return int((b["labels"] != IGNORE).sum())


def packed_step(model, opt: torch.optim.Optimizer, b: dict) -> int:
    logits = model(b["tokens"], b["books"], b["target_books"], position_ids=b["position_ids"],
                   attention_mask=attention_mask(b["doc"]))  # fmt: skip
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), b["targets"].reshape(-1),
                                             ignore_index=IGNORE)  # fmt: skip
    loss.backward()
    opt.step()
    opt.zero_grad()
    return int((b["targets"] != IGNORE).sum())


def interleaved(legs: dict[str, tuple]) -> dict[str, tuple[int, float, int]]:
    """Run the legs' steps alternately (A1 B1 A2 B2 ...; a shared machine's load hits them alike); the
    first step of each is a warm-up. -> name: (real tokens, seconds, timed steps)."""
    totals = {name: [0, 0.0, 0] for name in legs}
    longest = max(len(batches) for _, _, batches in legs.values())
    for i in range(longest):
        for name, (step, opt, batches) in legs.items():
            if i < len(batches):
                start = time.perf_counter()
                tokens = step(opt, batches[i])
                if i:
                    totals[name][0] += tokens
                    totals[name][1] += time.perf_counter() - start
                    totals[name][2] += 1
    return {name: tuple(v) for name, v in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--store", default=str(ROOT / "data" / "tokens" / "train"), help="token store to draw crops from"
    )
    parser.add_argument("--crops", type=int, default=64, help="item crops drawn from the store")
    parser.add_argument("--seq-steps", type=int, default=512, help="row length in steps")
    parser.add_argument("--batch", type=int, default=4, help="rows per step")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--compile", action="store_true", help="also time a torch.compile'd tokenlm leg")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = LMConfig(pattern="flatten", num_codebooks=4, hidden_size=256, num_layers=4, num_heads=4,
                   num_kv_heads=4, intermediate_size=688, max_steps=1024)  # fmt: skip
    torch.manual_seed(0)
    lm = TokenLM.build(cfg)
    data = TokenData([args.store], lm.pattern, cfg.num_codebooks, cfg.codebook_size, holdout_permille=0)
    pieces = crops(data, args.crops, args.seq_steps)
    plain = plain_rows(lm, pieces, args.seq_steps, args.batch)
    packed = packed_rows(lm, pieces, args.seq_steps, args.batch)
    import copy

    plain_lm, packed_lm = lm, copy.deepcopy(lm)
    legs = {
        "plain LlamaForCausalLM loop, padded rows": (
            lambda opt, b: plain_step(plain_lm, opt, b), torch.optim.AdamW(plain_lm.parameters(), lr=1e-4), plain),
        "tokenlm, packed rows": (
            lambda opt, b: packed_step(packed_lm, opt, b), torch.optim.AdamW(packed_lm.parameters(), lr=1e-4), packed),
    }  # fmt: skip
    if args.compile:
        compiled_lm = copy.deepcopy(lm)
        compiled = torch.compile(compiled_lm)
        legs["tokenlm, packed rows, torch.compile"] = (
            lambda opt, b: packed_step(compiled, opt, b), torch.optim.AdamW(compiled_lm.parameters(), lr=1e-4), packed)  # fmt: skip
    results = interleaved(legs)
    base = results["plain LlamaForCausalLM loop, padded rows"]
    base_rate = base[0] / base[1]
    lines = ["| loop | steps | real tokens/s | vs plain |", "|---|---|---|---|"]
    for name, (tokens, seconds, steps) in results.items():  # timed steps
        lines.append(f"| {name} | {steps} | {tokens / seconds:.0f} | {tokens / seconds / base_rate:.2f}x |")
    fill = np.mean([float((b["labels"] != IGNORE).float().mean()) for b in plain])
    body = "\n".join([
        f"A flatten token LM of {lm.num_parameters() / 1e6:.1f}M parameters (4 layers of 256, 4 codebooks), "
        f"{len(pieces)} crops of `{args.store}` ({data.codec_id}), rows of {args.seq_steps} steps, {args.batch} "
        f"rows a step, {args.threads} threads; the first step of each leg is a warm-up and not counted. Padded "
        f"rows are {100 * fill:.0f}% real tokens.", "", *lines,
    ])  # fmt: skip
    print(body)
    if not args.no_write:
        update_section("Token LM training throughput", body)


if __name__ == "__main__":
    main()
