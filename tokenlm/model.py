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

    def __post_init__(self) -> None:
        get_pattern(self.pattern)  # raises for an unknown one
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

    def __init__(self, num_codebooks: int = 4, codebook_size: int = 1024, backbone: dict | None = None, **kw):
        self.num_codebooks = num_codebooks
        self.codebook_size = codebook_size
        self.backbone = dict(backbone or {})
        super().__init__(**kw)


class MultiStreamLM(PreTrainedModel):
    """K code embeddings (``N + 2`` rows each: codes, empty, BOS) summed per step, Llama layers, K heads."""

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
        self.heads = nn.ModuleList(nn.Linear(D, N, bias=False) for _ in range(K))
        self.post_init()

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens ``[B, K, L]`` -> summed embeddings ``[B, L, D]``."""
        return sum(emb(tokens[:, k]) for k, emb in enumerate(self.embeddings))

    def forward(self, tokens: torch.Tensor, attention_mask=None, position_ids=None, **kw) -> torch.Tensor:
        """tokens ``[B, K, L]`` -> logits ``[B, K, L, N]``."""
        hidden = self.backbone(
            inputs_embeds=self.embed(tokens), attention_mask=attention_mask, position_ids=position_ids
        ).last_hidden_state  # (B, L, D)
        return self.project(hidden)

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.stack([head(hidden) for head in self.heads], dim=1)  # (B, K, L, N)


AutoConfig.register(MultiStreamConfig.model_type, MultiStreamConfig)
AutoModel.register(MultiStreamConfig, MultiStreamLM)


# ----------------------------------------------------------------------------------- the wrapper
@dataclass
class KVCache:
    """Preallocated keys and values of every layer: ``[B, H_kv, max_len, Dh]`` each, written at ``pos``."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]

    @classmethod
    def empty(cls, model: LlamaModel, batch: int, max_len: int, dtype: torch.dtype, device) -> KVCache:
        cfg = model.config
        head_dim = cfg.hidden_size // cfg.num_attention_heads
        shape = (batch, cfg.num_key_value_heads, max_len, head_dim)
        n = cfg.num_hidden_layers
        return cls(
            [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n)],
            [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n)],
        )


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
        hf = auto.from_pretrained(str(path), dtype=dtype)
        meta = {k: v for k, v in audiotok.items() if k != "lm"}
        return cls(lm_config, hf.float() if dtype == torch.float32 else hf, meta).eval()

    @property
    def backbone(self) -> LlamaModel:
        return self.hf.backbone if isinstance(self.hf, MultiStreamLM) else self.hf.model

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
    ) -> torch.Tensor:
        """tokens, books, target_books ``[B, Q, L]`` -> logits ``[B, Q, L, N]`` (fp32).

        attention_mask: ``[B, 1, L, L]`` bool (True = may attend), e.g. causal within each packed item;
        None = plain causal. position_ids ``[B, L]`` (restarting at each packed item)."""
        if isinstance(self.hf, MultiStreamLM):
            return self.hf(tokens, attention_mask=attention_mask, position_ids=position_ids).float()
        out = self.hf(
            input_ids=self._input_ids(tokens, books), attention_mask=attention_mask, position_ids=position_ids
        )
        return self._block_logits(out.logits.float(), target_books)

    # ---------------------------------------------------------------------- the incremental path
    def new_cache(self, batch: int, max_len: int) -> KVCache:
        p = next(self.hf.parameters())
        if max_len > self.config.max_steps:
            raise ValueError(f"{max_len} steps exceed the model's context of {self.config.max_steps} steps")
        return KVCache.empty(self.backbone, batch, max_len, p.dtype, p.device)

    def _embed(self, tokens: torch.Tensor, books: torch.Tensor) -> torch.Tensor:
        if isinstance(self.hf, MultiStreamLM):
            return self.hf.embed(tokens)
        return self.backbone.embed_tokens(self._input_ids(tokens, books))

    @torch.no_grad()
    def step(
        self, tokens: torch.Tensor, books: torch.Tensor, target_books: torch.Tensor, cache: KVCache, pos: int
    ) -> torch.Tensor:
        """Cells of steps ``pos .. pos + L - 1`` (``[B, Q, L]``), after ``pos`` steps already in ``cache``
        -> their logits ``[B, Q, L, N]``; writes their keys and values at ``pos`` (prefill: L > 1; decode:
        L = 1). Equal to the full forward pass over all steps so far (tested)."""
        model = self.backbone
        x = self._embed(tokens, books)  # (B, L, D)
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
            attn = layer.self_attn
            h = layer.input_layernorm(x)
            H, Hkv = attn.config.num_attention_heads, attn.config.num_key_value_heads
            Dh = attn.head_dim
            q = attn.q_proj(h).view(B, L, H, Dh).transpose(1, 2)  # (B, H, L, Dh)
            k = attn.k_proj(h).view(B, L, Hkv, Dh).transpose(1, 2)  # (B, Hkv, L, Dh)
            v = attn.v_proj(h).view(B, L, Hkv, Dh).transpose(1, 2)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            cache.keys[i][:, :, pos:end] = k
            cache.values[i][:, :, pos:end] = v
            keys, values = cache.keys[i][:, :, :end], cache.values[i][:, :, :end]
            if Hkv != H:
                keys = keys.repeat_interleave(H // Hkv, dim=1)
                values = values.repeat_interleave(H // Hkv, dim=1)
            y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)  # (B, H, L, Dh)
            x = x + attn.o_proj(y.transpose(1, 2).reshape(B, L, H * Dh))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        hidden = model.norm(x)
        if isinstance(self.hf, MultiStreamLM):
            return self.hf.project(hidden).float()
        return self._block_logits(self.hf.lm_head(hidden).float(), target_books)

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
        heads = (
            2
            * c.hidden_size
            * (c.codebook_size * c.num_codebooks if self.pattern.multi_stream else len(self.vocab))
        )
        return layers + heads


def bits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed bits of ``targets`` ``[...]`` under ``logits`` ``[..., N]`` (IGNORE cells count 0)."""
    nll = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE, reduction="sum"
    )
    return nll / math.log(2)


def describe(lm: TokenLM) -> dict[str, Any]:
    return {"pattern": lm.config.pattern, "params": lm.num_parameters(), **lm.meta}
