"""The audio encoder of the audio-language model: the pretrained token LM, read as a stack of states.

A clip's codes ``[K, T]`` go through the token LM as it was trained (its pattern's cells, BOS first),
in windows of at most `WINDOW_FRAMES` frames (20 s at 50 Hz; a longer clip is several windows, never cut).
The encoder splits the LM in two:

- the *trunk*, every layer but the last, always frozen. Its output is a pure function of the codes, so
  training caches it once per clip (`multimodal.data`) instead of recomputing it every step;
- the *top*, the last layer and the final norm, which the config keeps frozen (``frozen``), trains
  (``top``) or adapts with rank-r LoRA on its query and value projections (``lora``).

``layers`` picks what the connector reads: by default the top's output alone (layer L, after the final
norm); with a frozen encoder it may add earlier layers' outputs (0 = the summed code embeddings, i = layer
i's output, each normalized without weights), concatenated per state, since the probes find tempo and sound
events best read from the lowest layer and pitch from the top (BENCHMARKS.md, "Representation probes").

``codec_latents`` adds the codec's quantized latents, the clip's own codes embedded by the codec's codebooks
(``quantizer.decode_codes``, normalized without weights), beside the LM's states: the probes read sound
events and the language best from them. They are a function of the codes, so `AudioTokens` input still
works. Each pattern step reads the latent of the latest frame whose code has entered the LM by that step.

The states are mean-pooled over ``pool`` pattern steps (4 steps = 80 ms at 50 Hz), and a clip's
windows are concatenated; a clip with more than ``max_states`` pooled states is average-pooled down to
``max_states`` (long audio keeps its whole length at a coarser step). Rows are padded on the right and the
LM is causal, so a row's states do not depend on what else is in the batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tokenlm.data import item_cells
from tokenlm.model import TokenLM

WINDOW_FRAMES = 1000
ENCODER_MODES = ("frozen", "top", "lora")
POOL = 4  # token LM steps per audio state (80 ms)
MAX_STATES = 256  # longer clips are average-pooled down to this many states


class LoRALinear(nn.Module):
    """``base(x) + (alpha / r) * B(A(x))`` with ``base`` frozen and ``B`` zero at the start."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float | None = None):
        super().__init__()
        self.base = base
        self.down = nn.Linear(base.in_features, rank, bias=False)
        self.up = nn.Linear(rank, base.out_features, bias=False)
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.up.weight)
        self.scale = (alpha or rank) / rank

    @property
    def weight(self) -> torch.Tensor:  # what code reading ``proj.weight`` (e.g. fused decode) sees
        return self.base.weight + self.scale * self.up.weight @ self.down.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * self.up(self.down(x))


class AudioEncoder(nn.Module):
    """Token LM states of a clip (see the module docstring)."""

    def __init__(self, lm: TokenLM, mode: str = "frozen", lora_rank: int = 8, pool: int = POOL,
                 max_states: int = MAX_STATES, layers: list[int] | tuple[int, ...] = (),
                 quantizer: nn.Module | None = None):  # fmt: skip
        super().__init__()
        if mode not in ENCODER_MODES:
            raise ValueError(f"encoder mode must be one of {ENCODER_MODES}, got {mode!r}")
        self.lm, self.mode, self.pool, self.max_states = lm, mode, pool, max_states
        self.num_layers = len(lm.backbone.layers)
        self.layers = tuple(layers) or (self.num_layers,)
        if (
            list(self.layers) != sorted(set(self.layers))
            or self.layers[-1] != self.num_layers
            or self.layers[0] < 0
        ):
            raise ValueError(f"encoder layers must rise from 0 and end at the top ({self.num_layers}), "
                             f"got {list(self.layers)}")  # fmt: skip
        if len(self.layers) > 1 and mode != "frozen":
            raise ValueError(
                f"earlier layers {list(self.layers[:-1])} are read only with encoder_mode frozen"
            )
        if quantizer is not None and mode != "frozen":
            raise ValueError("codec latents are read only with encoder_mode frozen")
        self.quantizer = quantizer  # the codec's, frozen; None = the LM's states alone
        self.latent_dim = 0  # width of the codec latents read
        if quantizer is not None:
            quantizer.requires_grad_(False)
            quantizer.eval()
            with torch.no_grad():
                self.latent_dim = int(
                    quantizer.decode_codes(torch.zeros(1, 1, 1, dtype=torch.long)).shape[-1]
                )
        lm.requires_grad_(False)
        lm.eval()
        top = lm.backbone.layers[-1]
        if mode == "top":
            top.requires_grad_(True)
            lm.backbone.norm.requires_grad_(True)
        elif mode == "lora":
            top.self_attn.q_proj = LoRALinear(top.self_attn.q_proj, lora_rank)
            top.self_attn.v_proj = LoRALinear(top.self_attn.v_proj, lora_rank)

    @classmethod
    def from_config(cls, lm: TokenLM, cfg) -> AudioEncoder:
        """The encoder an `multimodal.model.ALMConfig` describes (``codec_latents`` loads the LM's codec)."""
        quantizer = codec_quantizer(lm) if cfg.codec_latents else None
        return cls(
            lm, cfg.encoder_mode, cfg.lora_rank, cfg.pool, cfg.max_states, cfg.encoder_layers, quantizer
        )

    @property
    def dim(self) -> int:
        """Width of a state: the LM's width times the number of layers read, plus the codec latents'."""
        return self.lm.config.hidden_size * len(self.layers) + self.latent_dim

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The encoder's weights that training changes (saved with the ALM; the rest is the token LM's)."""
        return {k: v for k, v in self.state_dict().items() if self._trained(k)}

    def _trained(self, key: str) -> bool:
        last = f"lm.hf.backbone.layers.{self.num_layers - 1}."
        if self.mode == "top":
            return key.startswith(last) or key.startswith("lm.hf.backbone.norm.")
        return self.mode == "lora" and (".down." in key or ".up." in key)

    def windows(self, codes: torch.Tensor) -> list[torch.Tensor]:
        """codes ``[K, T]`` -> windows of at most `WINDOW_FRAMES` frames, in order (all of T)."""
        K = self.lm.config.num_codebooks
        if codes.dim() != 2 or codes.shape[0] < K:
            raise ValueError(f"codes must be [K>={K}, T], got shape {tuple(codes.shape)}")
        if codes.shape[1] < 1:
            raise ValueError("the clip has no frames (empty audio)")
        codes = codes[:K].long()
        return list(codes.split(WINDOW_FRAMES, dim=1))

    @torch.no_grad()
    def trunk(self, windows: list[torch.Tensor]) -> list[torch.Tensor]:
        """Windows of codes -> the trunk's states ``[L_i, D]`` per window (one batched, padded pass)."""
        x, lengths, _ = self._run_trunk(windows)
        return [x[i, :n].float() for i, n in enumerate(lengths.tolist())]

    @torch.no_grad()
    def _run_trunk(
        self, windows: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Windows -> the trunk's output ``[B, L, D]`` (padded right), lengths ``[B]``, and the outputs of the
        earlier `layers` read (normalized, in order)."""
        lm = self.lm
        cells = [item_cells(lm.pattern, w, lm.config.codebook_size) for w in windows]
        L = max(c.length for c in cells)
        N = lm.config.codebook_size
        tokens = torch.stack([F.pad(c.tokens, (0, L - c.length), value=N) for c in cells])  # (B, Q, L)
        books = torch.stack([F.pad(c.books, (0, L - c.length), value=-1) for c in cells])
        device = next(lm.parameters()).device
        x = lm.embed(tokens.to(device), books.to(device))
        D = x.shape[-1]
        extra = [F.layer_norm(x.float(), (D,))] if 0 in self.layers else []
        for i in range(1, self.num_layers):
            x = lm.run_layers(x, i - 1, i)
            if i in self.layers:
                extra.append(F.layer_norm(x.float(), (D,)))
        if self.quantizer is not None:
            extra.append(self._latents(windows, L, device))
        return x, torch.tensor([c.length for c in cells], device=device), extra

    def _latents(self, windows: list[torch.Tensor], steps: int, device) -> torch.Tensor:
        """The codec's quantized latents of each window, normalized, on the LM's pattern steps: ``[B, steps,
        Dc]`` (zeros past a window's cells)."""
        rows = []
        for w in windows:
            K, T = w.shape
            z = self.quantizer.decode_codes(w[None].to(device))[0].float()  # (T, Dc)
            z = F.layer_norm(z, (z.shape[-1],))
            frames = step_frames(self.lm.pattern, K, T).to(device)
            rows.append(F.pad(z[frames], (0, 0, 0, steps - len(frames))))
        return torch.stack(rows)

    def head(self, trunk: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Trunk states ``[B, L, D]`` (padded right), lengths ``[B]`` -> pooled top states ``[B, P, D]`` and
        their mask ``[B, P]`` (True = a state), P = ceil(L / pool)."""
        x = self.lm.run_layers(trunk, self.num_layers - 1, self.num_layers)
        x = self.lm.backbone.norm(x)
        return pool_states(x, lengths, self.pool)

    def encode_codes(self, codes: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Clips' codes ``[K, T_b]`` -> pooled states ``[B, P, D]`` and mask ``[B, P]``: every window of every
        clip in one padded batch, then each clip's windows joined and capped at ``max_states``."""
        per_clip = [self.windows(c) for c in codes]
        flat = [w for ws in per_clip for w in ws]
        trunk, lengths, extra = self._run_trunk(flat)
        states, mask = self.head(trunk.float(), lengths)
        if extra:
            states = torch.cat([*(pool_states(e, lengths, self.pool)[0] for e in extra), states], dim=-1)
        rows, i = [], 0
        for ws in per_clip:
            parts = [states[j][mask[j]] for j in range(i, i + len(ws))]
            rows.append(cap_states(torch.cat(parts), self.max_states))
            i += len(ws)
        return pad_rows(rows, as_mask=True)


def step_frames(pattern, num_codebooks: int, num_frames: int) -> torch.Tensor:
    """For each step of an item's cells (BOS first, as `tokenlm.data.item_cells` lays them out), the latest
    frame any of whose codes has entered by that step: ``[S + 1]`` (BOS and leading empty steps read frame 0)."""
    layout = pattern.layout(num_codebooks, num_frames)  # (Q, S): k * T + t, or -1 where empty
    frame = torch.where(layout >= 0, layout % num_frames, -1).max(dim=0).values
    frame = torch.cat([frame.new_zeros(1), frame.clamp(min=0)])
    return torch.cummax(frame, dim=0).values


def codec_quantizer(lm: TokenLM) -> nn.Module:
    """The residual quantizer of the codec ``lm`` was trained on (checked by its id), for `codec_latents`."""
    from codec.nn.model import AudiotokCodec
    from codec.registry import load_codec

    codec = load_codec(lm.meta.get("codec") or "default")
    want = lm.meta.get("codec_id")
    if not isinstance(codec, AudiotokCodec) or (want and codec.codec_id != want):
        raise ValueError(f"codec_latents needs the audiotok codec the token LM was trained on ({want}); "
                         f"{lm.meta.get('codec') or 'default'} is {getattr(codec, 'codec_id', type(codec).__name__)}")  # fmt: skip
    return codec.model.quantizer


def pad_rows(rows: list[torch.Tensor], as_mask: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``[L_i, D]`` -> ``[B, L, D]`` padded with zeros, and lengths ``[B]`` (or the mask ``[B, L]``)."""
    out = nn.utils.rnn.pad_sequence(rows, batch_first=True)
    lengths = torch.tensor([len(r) for r in rows], device=out.device)
    if as_mask:
        return out, torch.arange(out.shape[1], device=out.device)[None] < lengths[:, None]
    return out, lengths


def pool_states(x: torch.Tensor, lengths: torch.Tensor, pool: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of each ``pool`` consecutive valid states: ``[B, L, D]`` -> ``[B, ceil(L/pool), D]`` + mask."""
    B, L, D = x.shape
    P = -(-L // pool)
    valid = (torch.arange(L, device=x.device)[None] < lengths.to(x.device)[:, None]).to(x.dtype)  # (B, L)
    x = F.pad(x * valid[..., None], (0, 0, 0, P * pool - L)).reshape(B, P, pool, D).sum(2)
    count = F.pad(valid, (0, P * pool - L)).reshape(B, P, pool).sum(2)
    return x / count.clamp(min=1)[..., None], count > 0


def cap_states(states: torch.Tensor, max_states: int) -> torch.Tensor:
    """``[P, D]`` -> at most ``max_states`` rows, by averaging neighbours (the whole clip stays in)."""
    if len(states) <= max_states:
        return states
    return F.adaptive_avg_pool1d(states.T[None], max_states)[0].T


def states_of(encoder: AudioEncoder, audio: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder inputs -> states ``[B, P, D]`` + mask: ``{"states", "mask"}`` pass through; ``{"trunk",
    "lengths"}`` (single-window clips) go through the top and are capped at ``max_states``."""
    if "states" in audio:
        return audio["states"], audio["mask"]
    if len(encoder.layers) > 1 or encoder.quantizer is not None:
        raise ValueError(
            "an encoder that reads several layers or the codec latents takes cached states, not trunk states"
        )
    states, mask = encoder.head(audio["trunk"], audio["lengths"])
    return pad_rows([cap_states(s[m], encoder.max_states) for s, m in zip(states, mask)], as_mask=True)
