"""Token language models over codec codes, on the `transformers` Llama backbone (RoPE, RMSNorm, SwiGLU, SDPA).

Two shapes, chosen by the interleaving pattern (`tokenlm.patterns`):
- one stream (flatten, coarse_first): a plain ``LlamaForCausalLM`` over the shared `codec.vocab.Vocabulary`
  (specials, then one id block of ``codebook_size`` per codebook). A checkpoint loads with
  ``AutoModelForCausalLM`` and in any tool that reads Llama; audiotok's own settings ride along in its
  config as ``audiotok``.
- K streams (delay, parallel): `MultiStreamLM`, a small ``PreTrainedModel`` with its own config
  (``model_type = "audiotok_multistream"``, registered with ``AutoConfig`` / ``AutoModel``): K code
  embeddings summed into one vector per step, the Llama decoder stack, and K output heads.

`TokenLM` wraps either with its pattern and gives every caller (training, evaluation, generation,
compression) one interface over *cells*: a step holds Q cells (Q = 1 or K); each input cell carries a
code (``0..N-1``), `EMPTY_TOKEN` (``N``: an empty cell of the pattern) or `BOS_TOKEN` (``N + 1``), and
the codebook it belongs to; each target cell's logits cover the ``N`` codes of its codebook only, so the
probabilities of every model and pattern are over the same N symbols (bits per code compare directly).

The decode path (`TokenLM.step`) reuses the backbone's own weights with a preallocated KV cache
(gpt-fast's ``prefill`` / ``decode_one_token`` split): it does not depend on the cache classes of any
particular `transformers` version, and a test checks its logits against the full forward pass.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaModel,
    PretrainedConfig,
    PreTrainedModel,
)

from codec.pretrained import quiet_progress_bars
from codec.vocab import Vocabulary
from tokenlm.patterns import Pattern, get_pattern

IGNORE = -100  # a target cell with nothing to predict


@dataclass
class LMConfig:
    """A token LM's shape and what it models; ``configs/tokenlm/*.yaml`` hold values for it (``model:``)."""

    pattern: str = "delay"
    num_codebooks: int = 4  # the first k codebooks of the store
    codebook_size: int = 1024
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 4
    intermediate_size: int = 688
    max_steps: int = 1024  # the longest sequence (in pattern steps, BOS included) the model attends over
    rope_theta: float = 10000.0
    # A depth head (RQ-Transformer, as in Moshi and UniAudio; K-stream patterns only): a small causal
    # transformer over the K cells of each step, conditioned on the temporal transformer's state, so the
    # codes of one step are predicted one after another instead of independently. 0 = K plain heads.
    depth_layers: int = 0
    depth_hidden: int = 128
    # causal: next-step prediction (generation, compression). masked (BEST-RQ / HuBERT style): spans of frames
    # are hidden (their cells read EMPTY) and the model predicts their codes with bidirectional attention;
    # a representation model only (tokenlm/masking.py). Masked needs the parallel pattern (one step a frame).
    objective: str = "causal"

    def __post_init__(self) -> None:
        pattern = get_pattern(self.pattern)  # raises for an unknown one
        if self.objective not in ("causal", "masked"):
            raise ValueError(f"objective must be causal or masked, got {self.objective!r}")
        if self.objective == "masked" and (self.pattern != "parallel" or self.depth_layers):
            raise ValueError("the masked objective needs the parallel pattern and no depth head")
        if self.depth_layers and not pattern.multi_stream:
            raise ValueError(f"a depth head needs a K-stream pattern (delay, parallel), not {self.pattern!r}")
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} must divide by num_heads {self.num_heads}, and num_heads "
                f"by num_kv_heads {self.num_kv_heads}"
            )

    @classmethod
    def from_dict(cls, raw: dict, where: str = "model") -> LMConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**raw)

    def llama(
        self, vocab_size: int, bos: int | None = None, eos: int | None = None, pad: int | None = None
    ) -> LlamaConfig:
        return LlamaConfig(
            vocab_size=vocab_size,
            bos_token_id=bos,
            eos_token_id=eos,
            pad_token_id=pad,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            num_key_value_heads=self.num_kv_heads,
            max_position_embeddings=self.max_steps,
            rope_theta=self.rope_theta,
            tie_word_embeddings=False,
            attn_implementation="sdpa",
        )


# ------------------------------------------------------------------------------ the K-stream model
class MultiStreamConfig(PretrainedConfig):
    """`MultiStreamLM`'s config: the Llama backbone's fields plus the code space."""

    model_type = "audiotok_multistream"

    def __init__(self, num_codebooks: int = 4, codebook_size: int = 1024, backbone: dict | None = None,
                 depth: dict | None = None, **kw):  # fmt: skip
        self.num_codebooks = num_codebooks
        self.codebook_size = codebook_size
        self.backbone = dict(backbone or {})
        self.depth = dict(depth or {})  # the depth transformer's Llama fields; {} = no depth head
        super().__init__(**kw)


class MultiStreamLM(PreTrainedModel):
    """K code embeddings (``N + 2`` rows each: codes, empty, BOS) summed per step, Llama layers, K heads;
    or, with a depth head, a small Llama over each step's K cells (cell k sees the step's state and the
    codes of cells 0..k-1) feeding the K heads."""

    config_class = MultiStreamConfig
    base_model_prefix = "backbone"
    _supports_sdpa = True

    def __init__(self, config: MultiStreamConfig):
        super().__init__(config)
        backbone = LlamaConfig(**config.backbone)
        backbone._attn_implementation = "sdpa"
        K, N, D = config.num_codebooks, config.codebook_size, backbone.hidden_size
        self.embeddings = nn.ModuleList(nn.Embedding(N + 2, D) for _ in range(K))
        self.backbone = LlamaModel(backbone)
        self.backbone.embed_tokens = None  # the summed code embeddings replace it
        self.depth = None
        if config.depth:
            depth = LlamaConfig(**config.depth)
            depth._attn_implementation = "sdpa"
            Dd = depth.hidden_size
            self.depth_in = nn.Linear(D, Dd)
            self.depth_codes = nn.ModuleList(nn.Embedding(N, Dd) for _ in range(K - 1))  # cell k-1's code
            self.depth = LlamaModel(depth)
            self.depth.embed_tokens = None
            D = Dd
        self.heads = nn.ModuleList(nn.Linear(D, N, bias=False) for _ in range(K))
        self.post_init()

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens ``[B, K, L]`` -> summed embeddings ``[B, L, D]``."""
        return sum(emb(tokens[:, k]) for k, emb in enumerate(self.embeddings))

    def forward(
        self, tokens: torch.Tensor, attention_mask=None, position_ids=None, step_codes=None, **kw
    ) -> torch.Tensor:
        """tokens ``[B, K, L]`` -> logits ``[B, K, L, N]``; with a depth head, ``step_codes`` ``[B, K, L]``
        are the codes of each position's own cells (teacher forcing; anything where a cell is empty)."""
        hidden = self.backbone(
            inputs_embeds=self.embed(tokens), attention_mask=attention_mask, position_ids=position_ids
        ).last_hidden_state  # (B, L, D)
        return self.project(hidden, step_codes)

    def project(self, hidden: torch.Tensor, step_codes: torch.Tensor | None = None) -> torch.Tensor:
        """hidden ``[B, L, D]`` -> logits ``[B, K, L, N]`` (a depth head needs ``step_codes``)."""
        if self.depth is None:
            return torch.stack([head(hidden) for head in self.heads], dim=1)  # (B, K, L, N)
        if step_codes is None:
            raise ValueError("a depth head needs the step's codes (step_codes) to predict its cells")
        B, L, _ = hidden.shape
        K = len(self.heads)
        x = self.depth_in(hidden).reshape(B * L, 1, -1).expand(B * L, K, -1)  # (B*L, K, Dd)
        codes = step_codes.clamp(0, self.config.codebook_size - 1).permute(0, 2, 1).reshape(B * L, K)
        shifted = [torch.zeros_like(x[:, 0])] + [emb(codes[:, k]) for k, emb in enumerate(self.depth_codes)]
        x = x + torch.stack(shifted, dim=1)  # cell k sees the code of cell k-1
        out = self.depth(inputs_embeds=x).last_hidden_state  # (B*L, K, Dd), causal over the K cells
        logits = torch.stack([head(out[:, k]) for k, head in enumerate(self.heads)], dim=1)  # (B*L, K, N)
        return logits.reshape(B, L, K, -1).permute(0, 2, 1, 3)

    def depth_logits(self, hidden: torch.Tensor, codes: torch.Tensor, k: int) -> torch.Tensor:
        """One step's cell ``k``: hidden ``[B, D]``, the codes of cells 0..k-1 ``[B, k]`` -> logits ``[B, N]``
        (the depth transformer over cells 0..k, recomputed: K is small)."""
        B = hidden.shape[0]
        x = self.depth_in(hidden)[:, None].expand(B, k + 1, -1)
        prev = [torch.zeros_like(x[:, 0])] + [self.depth_codes[j](codes[:, j]) for j in range(k)]
        out = self.depth(inputs_embeds=x + torch.stack(prev, dim=1)).last_hidden_state  # (B, k + 1, Dd)
        return self.heads[k](out[:, k])


AutoConfig.register(MultiStreamConfig.model_type, MultiStreamConfig)
AutoModel.register(MultiStreamConfig, MultiStreamLM)


# ----------------------------------------------------------------------------------- the wrapper
@dataclass
class KVCache:
    """Preallocated keys and values of every layer: ``[B, H_kv, max_len, Dh]`` each, written at ``pos``;
    and, per layer, the q/k/v and gate/up projection weights concatenated (one matmul each instead of
    three and two: fewer, larger ops per decoded step), taken from the model when the cache is made."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    fused: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    @classmethod
    def empty(cls, model: LlamaModel, batch: int, max_len: int, dtype: torch.dtype, device) -> KVCache:
        cfg = model.config
        head_dim = cfg.hidden_size // cfg.num_attention_heads
        shape = (batch, cfg.num_key_value_heads, max_len, head_dim)
        n = cfg.num_hidden_layers
        fused = None
        linears = [(y.self_attn.q_proj, y.self_attn.k_proj, y.self_attn.v_proj, y.mlp.gate_proj, y.mlp.up_proj)
                   for y in model.layers]  # fmt: skip
        if all(m.bias is None for group in linears for m in group):
            with torch.no_grad():
                fused = [(torch.cat([q.weight, k.weight, v.weight]), torch.cat([g.weight, u.weight]))
                         for q, k, v, g, u in linears]  # fmt: skip
        return cls(
            [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n)],
            [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n)],
            fused,
        )


def _depth_config(config: LMConfig) -> dict:
    if not config.depth_layers:
        return {}
    heads = max(1, config.depth_hidden // 64)
    return LlamaConfig(
        vocab_size=1, hidden_size=config.depth_hidden, intermediate_size=config.depth_hidden * 8 // 3,
        num_hidden_layers=config.depth_layers, num_attention_heads=heads, num_key_value_heads=heads,
        max_position_embeddings=config.num_codebooks, bos_token_id=None, eos_token_id=None, pad_token_id=None,
    ).to_dict()  # fmt: skip


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class TokenLM(nn.Module):
    """A token LM with its pattern: cells in, per-codebook logits out (see the module docstring)."""

    def __init__(self, config: LMConfig, hf: PreTrainedModel, meta: dict | None = None):
        super().__init__()
        self.config = config
        self.hf = hf
        self.pattern: Pattern = get_pattern(config.pattern)
        self.meta = dict(meta or {})  # codec_id, frame_rate, ...: what the LM was trained on
        self.vocab = Vocabulary(config.num_codebooks, config.codebook_size)

    # ------------------------------------------------------------------------------------ building
    @classmethod
    def build(cls, config: LMConfig, meta: dict | None = None) -> TokenLM:
        audiotok = {"lm": asdict(config), **(meta or {})}
        if get_pattern(config.pattern).multi_stream:
            hf_config = MultiStreamConfig(
                num_codebooks=config.num_codebooks,
                codebook_size=config.codebook_size,
                backbone=config.llama(vocab_size=1).to_dict(),
                depth=_depth_config(config),
                audiotok=audiotok,
            )
            hf = MultiStreamLM(hf_config)
        else:
            vocab = Vocabulary(config.num_codebooks, config.codebook_size)
            llama = config.llama(len(vocab), bos=vocab.bos_id, eos=vocab.eos_id, pad=vocab.pad_id)
            llama.audiotok = audiotok
            hf = LlamaForCausalLM(llama)
        return cls(config, hf, meta)

    def save_pretrained(self, path: str | Path, dtype: torch.dtype | None = None) -> None:
        """``config.json`` + ``model.safetensors`` (``dtype``: e.g. fp16 for shipping)."""
        model = self.hf
        if dtype is not None:
            model = self.hf.to(dtype)
        model.config.audiotok = {"lm": asdict(self.config), **self.meta}
        model.save_pretrained(str(path), safe_serialization=True)
        if dtype is not None:
            self.hf.float()

    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: torch.dtype = torch.float32) -> TokenLM:
        path = Path(path)
        if not (path / "config.json").is_file():
            raise ValueError(
                f"{path}: not a token LM folder (no config.json); train one or pass --lm default"
            )
        config = AutoConfig.from_pretrained(str(path))
        audiotok = getattr(config, "audiotok", None)
        if not audiotok or "lm" not in audiotok:
            raise ValueError(f"{path}: config.json is not an audiotok token LM (no 'audiotok' section)")
        lm_config = LMConfig.from_dict(audiotok["lm"], where=str(path / "config.json"))
        auto = AutoModel if get_pattern(lm_config.pattern).multi_stream else AutoModelForCausalLM
        with quiet_progress_bars():  # a few MB load in milliseconds; the bar would land in every CLI output
            hf = auto.from_pretrained(str(path), dtype=dtype)
        meta = {k: v for k, v in audiotok.items() if k != "lm"}
        return cls(lm_config, hf.float() if dtype == torch.float32 else hf, meta).eval()

    @property
    def backbone(self) -> LlamaModel:
        return self.hf.backbone if isinstance(self.hf, MultiStreamLM) else self.hf.model

    @property
    def causal(self) -> bool:
        """False for a masked (bidirectional) LM, which neither generates nor compresses."""
        return self.config.objective == "causal"

    @property
    def num_streams(self) -> int:
        return self.pattern.num_streams(self.config.num_codebooks)

    # ----------------------------------------------------------------------------------- the forward
    def _input_ids(self, tokens: torch.Tensor, books: torch.Tensor) -> torch.Tensor:
        """One-stream inputs ``[B, 1, L]`` (codes, EMPTY, BOS) -> vocabulary ids ``[B, L]``."""
        N, v = self.config.codebook_size, self.vocab
        ids = v.audio_offset + books.clamp(min=0) * N + tokens.clamp(max=N - 1)
        ids = torch.where(tokens == N + 1, v.bos_id, ids)
        return torch.where(tokens == N, v.pad_id, ids)[:, 0]

    def _block_logits(self, logits: torch.Tensor, target_books: torch.Tensor) -> torch.Tensor:
        """One-stream logits ``[B, L, V]`` -> each position's target codebook block ``[B, 1, L, N]``."""
        N = self.config.codebook_size
        start = self.vocab.audio_offset + target_books[:, 0].clamp(min=0) * N  # (B, L)
        index = start[..., None] + torch.arange(N, device=logits.device)  # (B, L, N)
        return logits.gather(-1, index)[:, None]

    def forward(
        self,
        tokens: torch.Tensor,
        books: torch.Tensor,
        target_books: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """tokens, books, target_books ``[B, Q, L]`` -> logits ``[B, Q, L, N]`` (fp32).

        attention_mask: ``[B, 1, L, L]`` bool (True = may attend), e.g. causal within each packed item;
        None = plain causal. position_ids ``[B, L]`` (restarting at each packed item). targets ``[B, Q, L]``:
        the codes the positions predict, which a depth head reads (teacher forcing; IGNORE where none).
        A masked LM attends both ways: None = every position sees every other."""
        if attention_mask is None and not self.causal:
            L = tokens.shape[-1]
            attention_mask = torch.ones(tokens.shape[0], 1, L, L, dtype=torch.bool, device=tokens.device)
        if isinstance(self.hf, MultiStreamLM):
            step_codes = None if targets is None else targets.clamp(min=0)
            return self.hf(
                tokens, attention_mask=attention_mask, position_ids=position_ids, step_codes=step_codes
            ).float()
        out = self.hf(
            input_ids=self._input_ids(tokens, books), attention_mask=attention_mask, position_ids=position_ids
        )
        return self._block_logits(out.logits.float(), target_books)

    # ---------------------------------------------------------------------- the incremental path
    def new_cache(self, batch: int, max_len: int) -> KVCache:
        if not self.causal:
            raise ValueError(
                "a masked LM attends both ways: it cannot generate or compress (train a causal one)"
            )
        p = next(self.hf.parameters())
        if max_len > self.config.max_steps:
            raise ValueError(f"{max_len} steps exceed the model's context of {self.config.max_steps} steps")
        return KVCache.empty(self.backbone, batch, max_len, p.dtype, p.device)

    def embed(self, tokens: torch.Tensor, books: torch.Tensor) -> torch.Tensor:
        """Cells ``[B, Q, L]`` (tokens and their codebooks) -> the backbone's inputs ``[B, L, D]``."""
        if isinstance(self.hf, MultiStreamLM):
            return self.hf.embed(tokens)
        return self.backbone.embed_tokens(self._input_ids(tokens, books))

    @property
    def has_depth(self) -> bool:
        return isinstance(self.hf, MultiStreamLM) and self.hf.depth is not None

    @torch.inference_mode()
    def step(
        self, tokens: torch.Tensor, books: torch.Tensor, target_books: torch.Tensor, cache: KVCache, pos: int
    ) -> torch.Tensor:
        """Cells of steps ``pos .. pos + L - 1`` (``[B, Q, L]``), after ``pos`` steps already in ``cache``
        -> their logits ``[B, Q, L, N]``; writes their keys and values at ``pos`` (prefill: L > 1; decode:
        L = 1). Equal to the full forward pass over all steps so far (tested). A model with a depth head
        decides a step's cells one after another: `step_hidden`, then `decide`."""
        if self.has_depth:
            raise ValueError("a depth-head LM predicts a step's cells in turn: use step_hidden and decide")
        return self.logits(self.step_hidden(tokens, books, cache, pos), target_books)

    def logits(self, hidden: torch.Tensor, target_books: torch.Tensor) -> torch.Tensor:
        """The output heads over hidden states ``[B, L, D]`` -> ``[B, Q, L, N]`` (no depth head)."""
        if isinstance(self.hf, MultiStreamLM):
            return self.hf.project(hidden).float()
        book = int(target_books.flatten()[0]) if target_books.numel() else -1
        if book >= 0 and bool((target_books == book).all()):  # one block for all (decoding): its rows only
            N, start = self.config.codebook_size, self.vocab.audio_offset + book * self.config.codebook_size
            return F.linear(hidden, self.hf.lm_head.weight[start : start + N]).float()[:, None]
        return self._block_logits(self.hf.lm_head(hidden).float(), target_books)

    def next_logits(self, hidden: torch.Tensor, target_books: torch.Tensor) -> torch.Tensor:
        """One step's logits ``[B, Q, N]`` from its hidden states ``[B, D]`` with static shapes and no host
        sync (the compiled decode step runs it; no depth head). A one-stream model computes only the block
        of row 0's target codebook: generation gives every row the same layout."""
        if isinstance(self.hf, MultiStreamLM):
            return self.hf.project(hidden[:, None]).float()[:, :, 0]
        N, K, start = self.config.codebook_size, self.config.num_codebooks, self.vocab.audio_offset
        blocks = self.hf.lm_head.weight[start : start + K * N].view(K, N, -1)
        block = blocks.index_select(0, target_books[0, :1].clamp(min=0))[0]  # (N, D), no host sync
        return F.linear(hidden, block).float()[:, None]

    @torch.inference_mode()
    def decide(self, hidden: torch.Tensor, target_books: torch.Tensor, choose) -> torch.Tensor:
        """A step's cells from its hidden state ``[B, D]``: ``choose(streams, logits [B, q, N]) -> codes
        [B, q]`` picks (samples, forces, or decodes) the codes of the streams in the slice ``streams``.
        Without a depth head it is called once for all Q streams; with one, once per stream in order,
        each seeing the codes chosen before it (0 standing in for an empty cell, as in training)."""
        if not self.has_depth:
            return choose(slice(None), self.logits(hidden[:, None], target_books[..., None])[:, :, 0])
        chosen: list[torch.Tensor] = []
        for k in range(self.config.num_codebooks):
            prev = (
                torch.stack(chosen, dim=1)
                if chosen
                else hidden.new_zeros(hidden.shape[0], 0, dtype=torch.long)
            )
            logits = self.hf.depth_logits(hidden, prev, k).float()  # (B, N)
            code = choose(slice(k, k + 1), logits[:, None])[:, 0]
            chosen.append(torch.where(target_books[:, k] >= 0, code, torch.zeros_like(code)).clamp(min=0))
        return torch.stack(chosen, dim=1)

    @torch.inference_mode()
    def step_hidden(
        self, tokens: torch.Tensor, books: torch.Tensor, cache: KVCache, pos: int
    ) -> torch.Tensor:
        """The backbone's final hidden states ``[B, L, D]`` of steps ``pos .. pos + L - 1`` (see `step`)."""
        model = self.backbone
        x = self.embed(tokens, books)  # (B, L, D)
        B, L, _ = x.shape
        positions = torch.arange(pos, pos + L, device=x.device)[None].expand(B, L)
        cos, sin = model.rotary_emb(x, positions)  # (B, L, Dh)
        cos, sin = cos[:, None].to(x.dtype), sin[:, None].to(x.dtype)
        end = pos + L
        if L > 1:  # causal among the new steps, all of the cached ones
            mask = torch.ones(L, end, dtype=torch.bool, device=x.device).tril(diagonal=pos)
        else:
            mask = None
        for i, layer in enumerate(model.layers):

            def store(k: torch.Tensor, v: torch.Tensor, i: int = i) -> tuple[torch.Tensor, torch.Tensor]:
                cache.keys[i][:, :, pos:end] = k
                cache.values[i][:, :, pos:end] = v
                return cache.keys[i][:, :, :end], cache.values[i][:, :, :end]

            x = self._layer(i, layer, x, cos, sin, cache, store, mask)
        return model.norm(x)

    def run_layers(
        self, x: torch.Tensor, start: int = 0, stop: int | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Backbone layers ``start .. stop - 1`` over inputs ``x`` ``[B, L, D]`` at positions ``0 .. L - 1``,
        without a cache and differentiable (the audio-language model's encoder runs the LM this way).
        mask: ``[B, 1, L, L]`` bool (True = may attend); None = causal (every position, for a masked LM).
        The final norm is not applied."""
        model = self.backbone
        B, L, _ = x.shape
        positions = torch.arange(L, device=x.device)[None].expand(B, L)
        cos, sin = model.rotary_emb(x, positions)
        cos, sin = cos[:, None].to(x.dtype), sin[:, None].to(x.dtype)
        if mask is None:
            mask = torch.ones(L, L, dtype=torch.bool, device=x.device)
            mask = mask.tril() if self.causal else mask
        none = KVCache([], [], None)
        for i in range(start, len(model.layers) if stop is None else stop):
            x = self._layer(i, model.layers[i], x, cos, sin, none, lambda k, v: (k, v), mask)
        return x

    def _layer(self, i: int, layer: nn.Module, x: torch.Tensor, cos, sin, cache: KVCache, store, mask):
        """One decoder layer over new steps ``x`` ``[B, L, D]``; ``store(k, v)`` puts their keys and values
        in the cache and returns the keys and values to attend over."""
        attn = layer.self_attn
        B, L, _ = x.shape
        h = layer.input_layernorm(x)
        H, Hkv = attn.config.num_attention_heads, attn.config.num_key_value_heads
        Dh = attn.head_dim
        if cache.fused is not None:
            q, k, v = F.linear(h, cache.fused[i][0]).split([H * Dh, Hkv * Dh, Hkv * Dh], dim=-1)
        else:
            q, k, v = attn.q_proj(h), attn.k_proj(h), attn.v_proj(h)
        q = q.view(B, L, H, Dh).transpose(1, 2)  # (B, H, L, Dh)
        k = k.view(B, L, Hkv, Dh).transpose(1, 2)  # (B, Hkv, L, Dh)
        v = v.view(B, L, Hkv, Dh).transpose(1, 2)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        keys, values = store(k, v)
        if Hkv != H:
            keys = keys.repeat_interleave(H // Hkv, dim=1)
            values = values.repeat_interleave(H // Hkv, dim=1)
        y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)  # (B, H, L, Dh)
        x = x + attn.o_proj(y.transpose(1, 2).reshape(B, L, H * Dh))
        h = layer.post_attention_layernorm(x)
        if cache.fused is not None:
            gate, up = F.linear(h, cache.fused[i][1]).chunk(2, dim=-1)
            return x + layer.mlp.down_proj(layer.mlp.act_fn(gate) * up)
        return x + layer.mlp(h)

    def decode_one(
        self, tokens: torch.Tensor, books: torch.Tensor, cache: KVCache, pos: torch.Tensor
    ) -> torch.Tensor:
        """`step_hidden` of one step with static shapes (gpt-fast's ``decode_one_token``): ``pos`` is a
        0-dim tensor, the cache is written with ``index_copy_`` and attended over whole with a mask, so
        ``torch.compile`` builds it once for every position. -> hidden ``[B, 1, D]``."""
        model = self.backbone
        x = self.embed(tokens, books)  # (B, 1, D)
        B = x.shape[0]
        cos, sin = model.rotary_emb(x, pos.view(1, 1).expand(B, 1))
        cos, sin = cos[:, None].to(x.dtype), sin[:, None].to(x.dtype)
        length = cache.keys[0].shape[2]
        mask = (torch.arange(length, device=x.device) <= pos).view(1, 1, 1, length)
        index = pos.view(1)
        for i, layer in enumerate(model.layers):

            def store(k: torch.Tensor, v: torch.Tensor, i: int = i) -> tuple[torch.Tensor, torch.Tensor]:
                cache.keys[i].index_copy_(2, index, k)
                cache.values[i].index_copy_(2, index, v)
                return cache.keys[i], cache.values[i]

            x = self._layer(i, layer, x, cos, sin, cache, store, mask)
        return model.norm(x)

    # ------------------------------------------------------------------------------------ figures
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_step(self, context: int) -> float:
        """Forward FLOPs of one step at a mean attention context (6N-style accounting: 2 per MAC)."""
        c = self.config
        layers = c.num_layers * (
            2 * c.hidden_size * c.hidden_size * (2 + 2 * c.num_kv_heads / c.num_heads)
            + 2 * 3 * c.hidden_size * c.intermediate_size
            + 2 * 2 * context * c.hidden_size
        )
        if not self.pattern.multi_stream:
            return layers + 2 * c.hidden_size * len(self.vocab)
        if not c.depth_layers:
            return layers + 2 * c.hidden_size * c.codebook_size * c.num_codebooks
        d, K = c.depth_hidden, c.num_codebooks  # the depth transformer runs over K cells per step
        depth = K * c.depth_layers * (2 * 4 * d * d + 2 * 3 * d * (d * 8 // 3) + 2 * 2 * K * d)
        return layers + 2 * c.hidden_size * d + depth + 2 * d * c.codebook_size * K


def bits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed bits of ``targets`` ``[...]`` under ``logits`` ``[..., N]`` (IGNORE cells count 0)."""
    nll = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE, reduction="sum"
    )
    return nll / math.log(2)


def describe(lm: TokenLM) -> dict[str, Any]:
    return {"pattern": lm.config.pattern, "params": lm.num_parameters(), **lm.meta}
