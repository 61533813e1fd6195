"""Continue codec tokens with a token LM: prefill the prompt, then one step at a time on a preallocated KV cache.

gpt-fast's split (``prefill`` then ``decode_one_token``) over `TokenLM.step`, for every pattern at once:
the pattern's layout for the whole output (prompt frames + new frames) says, for each cell, whether it
holds a prompt code (forced), a new code (sampled) or nothing (empty). The steps before the first cell
to sample run as one prefill; after it, each step feeds the cells just decided. Prompts of different
lengths share one layout (the longest prompt plus the new frames); a shorter prompt's extra frames are
sampled and cut off, so every item's output is its prompt plus exactly ``new_frames`` frames.

Sampling: temperature, then top-k, then top-p (nucleus) on each cell's N logits, then the exponential
race (``argmax(p / E)`` with ``E ~ Exp(1)``, a draw from ``p``: gpt-fast's sampler, with no host sync).
The noise comes from a ``torch.Generator`` of the run's own, drawn ahead in blocks of steps, so a seed
makes a run repeatable and the eager and compiled paths draw the same codes.

``compiled=True`` compiles the whole decode step of a model without a depth head: the LM step on the
static cache, the next cells' logits and the sampler, one graph (gpt-fast's ``decode_one_token``). A
depth-head model compiles only its LM step; its cells are decided one after another in eager mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from tokenlm.model import TokenLM

FORCED, SAMPLED, EMPTY_CELL = 0, 1, 2


@dataclass
class Sampling:
    temperature: float = 1.0
    top_k: int = 0  # 0 = all
    top_p: float = 1.0
    seed: int | None = 0

    def __post_init__(self) -> None:
        if self.temperature < 0 or self.top_k < 0 or not 0 < self.top_p <= 1:
            raise ValueError(
                f"sampling needs temperature >= 0, top_k >= 0 and 0 < top_p <= 1, got {self.temperature}, "
                f"{self.top_k}, {self.top_p}"
            )


NOISE_BLOCK = 64  # steps of sampling noise drawn at once ...
NOISE_FLOATS = 1 << 22  # ... but at most this many numbers (16 MB) at once


def sample(logits: torch.Tensor, sampling: Sampling, noise: torch.Tensor | None) -> torch.Tensor:
    """logits ``[..., N]`` -> codes ``[...]``; temperature 0 takes the most likely code, otherwise ``noise``
    (``Exp(1)`` draws of the logits' shape) picks one from the filtered distribution."""
    if sampling.temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / sampling.temperature
    if sampling.top_k and sampling.top_k < logits.shape[-1]:
        kth = logits.topk(sampling.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p < 1:
        ordered, order = logits.sort(dim=-1, descending=True)
        cumulative = ordered.softmax(-1).cumsum(-1)
        drop = cumulative - ordered.softmax(-1) > sampling.top_p  # keep the smallest set reaching top_p
        logits = logits.scatter(-1, order, ordered.masked_fill(drop, float("-inf")))
    return (logits.softmax(-1) / noise).argmax(-1)


class _Noise:
    """``Exp(1)`` draws ``[B, Q, N]`` for each step in turn, from the run's generator (None for greedy)."""

    def __init__(self, shape: tuple[int, int, int], sampling: Sampling, device) -> None:
        self.shape, self.greedy, self.block = shape, sampling.temperature == 0, None
        self.steps = max(1, min(NOISE_BLOCK, NOISE_FLOATS // (shape[0] * shape[1] * shape[2])))
        self.at = self.steps
        self.generator = None
        if sampling.seed is not None:
            self.generator = torch.Generator(device=device).manual_seed(sampling.seed)
        self.device = device

    def next(self) -> torch.Tensor | None:
        if self.greedy:
            return None
        if self.at == self.steps:
            self.block = torch.empty(self.steps, *self.shape, device=self.device)
            self.block.exponential_(generator=self.generator)
            self.block.clamp_(min=torch.finfo(torch.float32).tiny)  # p / 0 would be nan for a p = 0 code
            self.at = 0
        self.at += 1
        return self.block[self.at - 1]


@torch.inference_mode()
def generate(
    lm: TokenLM,
    prompts: list[torch.Tensor],
    new_frames: int,
    sampling: Sampling | None = None,
    compiled: bool = False,
) -> list[torch.Tensor]:
    """Each prompt ``[K, T_i]`` (T_i may be 0) continued by ``new_frames`` frames -> ``[K, T_i + new_frames]``.

    compiled: decode with ``torch.compile`` of the whole step (`decode_and_sample`; the LM step alone for
    a depth-head model): static shapes, built once per batch size, length and sampling, then reused;
    worth it for long outputs."""
    sampling = sampling or Sampling()
    K, N = lm.config.num_codebooks, lm.config.codebook_size
    if not prompts:
        raise ValueError("generate needs at least one prompt (a [K, 0] tensor for none)")
    for p in prompts:
        if p.dim() != 2 or p.shape[0] < K:
            raise ValueError(
                f"a prompt must be [K, T] codes with at least the LM's {K} codebooks, got {list(p.shape)}"
            )
    device = next(lm.parameters()).device
    B = len(prompts)
    lengths = torch.tensor([p.shape[1] for p in prompts])
    T = int(lengths.max()) + new_frames
    layout = lm.pattern.layout(K, T).to(device)  # (Q, S)
    Q, S = layout.shape
    if S + 1 > lm.config.max_steps:
        frames = max(0, lm.config.max_steps - 1 - (S - T))
        raise ValueError(f"{T} frames need {S + 1} steps; the LM's context holds {lm.config.max_steps} "
                         f"({frames} frames here): ask for fewer seconds or a shorter prompt")  # fmt: skip
    frame = torch.where(layout >= 0, layout % T, -1)  # (Q, S)
    book = torch.where(layout >= 0, layout // T, -1)
    # the kind of each item's cells, and the prompt codes laid out
    kind = torch.full((B, Q, S), EMPTY_CELL, dtype=torch.long, device=device)
    known = torch.full((B, K, T), N, dtype=torch.long, device=device)  # N = not yet known
    for i, p in enumerate(prompts):
        known[i, :, : p.shape[1]] = p[:K].to(device)
        kind[i] = torch.where(layout < 0, EMPTY_CELL, torch.where(frame < p.shape[1], FORCED, SAMPLED))
    sequence = torch.full((B, Q, S), N, dtype=torch.long, device=device)
    forced = kind == FORCED
    flat_known = known.reshape(B, K * T)
    sequence[forced] = flat_known.gather(1, layout.clamp(min=0).reshape(1, -1).expand(B, -1)).reshape(
        B, Q, S
    )[forced]
    books = book[None].expand(B, Q, S)
    noise = _Noise((B, Q, N), sampling, device)

    # position p holds step p - 1 as input (position 0 is BOS) and predicts step p
    bos_tok = torch.full((B, Q, 1), N + 1, dtype=torch.long, device=device)
    no_book = torch.full((B, Q, 1), -1, dtype=torch.long, device=device)
    tokens_in = torch.cat([bos_tok, sequence], dim=2)  # (B, Q, S + 1), updated as cells are sampled
    books_in = torch.cat([no_book, books], dim=2)

    cache = lm.new_cache(B, S + 1)
    sampled = kind == SAMPLED
    first_sampled = int(torch.nonzero(sampled.any(dim=(0, 1))).min()) if sampled.any() else S
    if first_sampled == S:  # nothing to sample: every frame is in the prompts
        return [p[:K].cpu() for p in prompts]
    # prefill: positions 0 .. first_sampled at once; the last one's state predicts step first_sampled
    hidden = lm.step_hidden(tokens_in[..., : first_sampled + 1], books_in[..., : first_sampled + 1], cache, 0)
    fused = compiled and not lm.has_depth
    decode = _compiled(lm, "_compiled_step" if fused else "_compiled_decode") if compiled else None
    for s in range(first_sampled, S):
        take = sampled[:, :, s]  # (B, Q)
        drawn = noise.next()
        step = tokens_in[..., s : s + 1], books_in[..., s : s + 1]  # position s holds step s - 1
        position = torch.tensor(s, device=device)
        if s > first_sampled and fused:  # the whole step in one graph: the LM, the next logits, the sampler
            codes = decode(*step, cache, position, books[:, :, s], sampling, drawn)
        else:
            if s > first_sampled:
                hidden = decode(*step, cache, position) if decode else lm.step_hidden(*step, cache, s)

            def choose(streams: slice, logits: torch.Tensor, noise=drawn) -> torch.Tensor:
                return sample(logits, sampling, None if noise is None else noise[:, streams])  # (B, q)

            codes = lm.decide(hidden[:, -1], books[:, :, s], choose)  # (B, Q)
        sequence[:, :, s] = torch.where(take, codes, sequence[:, :, s])
        tokens_in[:, :, s + 1] = sequence[:, :, s]
    codes = lm.pattern.revert(sequence, K, T)  # (B, K, T)
    return [codes[i, :, : int(lengths[i]) + new_frames].cpu() for i in range(B)]


def decode_and_sample(lm: TokenLM, tokens: torch.Tensor, books: torch.Tensor, cache, position: torch.Tensor,
                      target_books: torch.Tensor, sampling: Sampling, noise: torch.Tensor | None) -> torch.Tensor:  # fmt: skip
    """One whole decode step of a model without a depth head: `TokenLM.decode_one`, the logits of the
    next cells (`TokenLM.next_logits`) and `sample` -> codes ``[B, Q]`` (compiled as one graph)."""
    hidden = lm.decode_one(tokens, books, cache, position)[:, -1]
    return sample(lm.next_logits(hidden, target_books), sampling, noise)


def _compiled(lm: TokenLM, name: str):
    """torch.compile of the static-shape step (``_compiled_step``: `decode_and_sample`; ``_compiled_decode``:
    `TokenLM.decode_one`), kept on the model for later calls."""
    if getattr(lm, name, None) is None:
        fn = lm.decode_one if name == "_compiled_decode" else partial(decode_and_sample, lm)
        setattr(lm, name, torch.compile(fn, dynamic=False))
    return getattr(lm, name)
