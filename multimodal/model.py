"""The audio-language network: the token LM as audio encoder, a connector, a text decoder and a CLAP head.

::

    codes [K, T] -> AudioEncoder (token LM; frozen / top layer trained / LoRA) -> states [P, De] (12.5 Hz)
        -> connector -> prefix [P', H] -> text decoder (Llama over the Vocabulary's specials + text pieces)
           row: prefix, <bos> question pieces <text_start> answer pieces <eos>; the loss is on the answer
        -> mean pool -> audio projection --\
    caption pieces -> text encoder -> text projection -> one embedding space (InfoNCE, CLAP-style)

Connectors (compared in BENCHMARKS.md at equal data and budget):

- ``prefix`` (Pengi): every pooled state through an MLP, in order, as the decoder's prefix;
- ``qformer`` (BLIP-2 / SALMONN): ``num_queries`` learned queries cross-attend to the states, and only
  those queries are the prefix (a fixed, shorter prefix whatever the clip's length).

``question_first: true`` puts the question before the audio prefix: ``<bos> question, prefix, <text_start>
answer``. The decoder is causal, so only then can the audio positions read the question and compute, at
every state and every layer, what it asks (is this the named sound? is this the melody?); with the prefix
first, the states are processed blind and only the few positions after them can relate question and audio.
The answer's first piece is predicted at the same position either way.

``question_encoder: minilm`` reads each question through a frozen pretrained sentence encoder
(`multimodal.question`) instead of the decoder's own piece embeddings: its token states, projected, take
the question's place in the row. The shipped model does this, so a word the paired set never used in a
question still means what it means.

``codec_latents: true`` gives the connector the codec's quantized latents beside the token LM's states
(`multimodal.encoder`): the representation probes read sound events and the language best from them.

``time_embedding: true`` adds each prefix state's place in the clip (sinusoids of its index, through a
learned projection that starts at zero) to the prefix. The decoder's RoPE puts position only in how
strongly a position attends to another, never in what it reads, so an answer that has found "the dog" in
the audio cannot read *when* it was; order, the n-th sound, which lasts longer and which way a melody moves
all ask exactly that (whisper's encoder adds sinusoidal positions to its audio states).

``audio_input: false`` withholds the audio (an empty prefix): the question-only baseline, the same
architecture trained on the same questions and answers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from codec.vocab import Vocabulary
from multimodal.encoder import MAX_STATES, POOL, AudioEncoder, pad_rows, states_of
from multimodal.question import MINILM_WIDTH, MiniLMQuestions

CONNECTORS = ("prefix", "qformer")
TIME_FREQUENCIES = 32  # time_embedding: periods from 2 to 1024 states (0.16 s to 82 s at 80 ms a state)
QUESTION_ENCODERS = ("", "minilm")


@dataclass
class ALMConfig:
    """The ``model:`` section of a configs/multimodal YAML."""

    connector: str = "prefix"  # prefix | qformer
    encoder_mode: str = "frozen"  # frozen | top | lora (see multimodal.encoder)
    lora_rank: int = 8
    encoder_layers: list[int] = field(default_factory=list)  # [] = the top only; e.g. [0, 2, 4] (frozen)
    codec_latents: bool = False  # the codec's quantized latents beside the LM's states (frozen encoder)
    pool: int = POOL  # token LM steps per audio state
    max_states: int = MAX_STATES  # longer clips are average-pooled down to this many states
    audio_input: bool = True  # false: the question-only baseline
    question_first: bool = False  # the question before the audio prefix (see the module docstring)
    time_embedding: bool = False  # each prefix state's index as sinusoids, added to the prefix (prefix only)
    question_encoder: str = ""  # "" = the decoder's piece embeddings; "minilm" (multimodal.question)
    num_queries: int = 16  # qformer
    connector_layers: int = 2  # qformer
    hidden_size: int = 256
    num_layers: int = 3
    num_heads: int = 4
    intermediate_size: int = 688
    text_layers: int = 2
    embed_dim: int = 128
    max_text_tokens: int = 48  # question or answer pieces

    def __post_init__(self) -> None:
        if self.connector not in CONNECTORS:
            raise ValueError(f"connector must be one of {CONNECTORS}, got {self.connector!r}")
        if self.question_encoder not in QUESTION_ENCODERS:
            raise ValueError(
                f"question_encoder must be one of {QUESTION_ENCODERS}, got {self.question_encoder!r}"
            )
        if self.time_embedding and self.connector != "prefix":
            raise ValueError("time_embedding needs the prefix connector (a qformer's prefix is its queries)")

    @classmethod
    def from_dict(cls, raw: dict, where: str = "model") -> ALMConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
        return cls(**raw)


def time_features(length: int, device=None) -> torch.Tensor:
    """Sinusoids of the states' indices ``[length, 2 * TIME_FREQUENCIES]``: sin and cos at periods spaced
    geometrically from 2 to 1024 states."""
    periods = 2.0 * 512.0 ** (torch.arange(TIME_FREQUENCIES, device=device) / (TIME_FREQUENCIES - 1))
    angle = torch.arange(length, device=device, dtype=torch.float32)[:, None] * (2 * math.pi / periods)
    return torch.cat([angle.sin(), angle.cos()], dim=-1)


class QFormer(nn.Module):
    """Learned queries that read the audio states through cross-attention."""

    def __init__(self, cfg: ALMConfig, dim_in: int):
        super().__init__()
        H = cfg.hidden_size
        self.inp = nn.Sequential(nn.LayerNorm(dim_in), nn.Linear(dim_in, H))
        self.queries = nn.Parameter(torch.randn(cfg.num_queries, H) * 0.02)
        layer = nn.TransformerDecoderLayer(
            H, cfg.num_heads, cfg.intermediate_size, dropout=0.0, batch_first=True, norm_first=True
        )
        self.layers = nn.TransformerDecoder(layer, cfg.connector_layers)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B = states.shape[0]
        q = self.queries[None].expand(B, -1, -1)
        out = self.layers(q, self.inp(states), memory_key_padding_mask=~mask)
        return out, torch.ones(out.shape[:2], dtype=torch.bool, device=out.device)


class PrefixMLP(nn.Module):
    """Each audio state through an MLP into the decoder's width (the prefix keeps the states' order)."""

    def __init__(self, cfg: ALMConfig, dim_in: int):
        super().__init__()
        H = cfg.hidden_size
        self.net = nn.Sequential(nn.LayerNorm(dim_in), nn.Linear(dim_in, H), nn.GELU(), nn.Linear(H, H))

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(states), mask


class AudioLanguageNet(nn.Module):
    """See the module docstring. Text ids are the Vocabulary's (specials then text pieces)."""

    def __init__(self, cfg: ALMConfig, vocab: Vocabulary, encoder: AudioEncoder):
        super().__init__()
        if vocab.text_size == 0:
            raise ValueError("the audio-language model needs a vocabulary with a text model")
        self.cfg, self.vocab, self.encoder = cfg, vocab, encoder
        De, H, V = encoder.dim, cfg.hidden_size, vocab.audio_offset
        self.connector = (PrefixMLP if cfg.connector == "prefix" else QFormer)(cfg, De)
        max_prefix = cfg.num_queries if cfg.connector == "qformer" else cfg.max_states
        llama = LlamaConfig(
            vocab_size=V, hidden_size=H, intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.num_layers,
            num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_heads,
            max_position_embeddings=max_prefix + 2 * cfg.max_text_tokens + 4, rms_norm_eps=1e-6,
            bos_token_id=vocab.bos_id, eos_token_id=vocab.eos_id, pad_token_id=vocab.pad_id,
            tie_word_embeddings=True,
        )  # fmt: skip
        llama._attn_implementation = "sdpa"
        self.decoder = LlamaForCausalLM(llama)
        layer = nn.TransformerEncoderLayer(
            H, cfg.num_heads, cfg.intermediate_size, dropout=0.0, batch_first=True, norm_first=True
        )
        self.text_encoder = nn.TransformerEncoder(layer, cfg.text_layers, enable_nested_tensor=False)
        self.text_positions = nn.Parameter(torch.randn(2 * cfg.max_text_tokens + 2, H) * 0.02)
        self.text_proj = nn.Linear(H, cfg.embed_dim)
        self.audio_proj = nn.Sequential(
            nn.LayerNorm(De), nn.Linear(De, H), nn.GELU(), nn.Linear(H, cfg.embed_dim)
        )
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        if cfg.time_embedding:
            self.time_proj = nn.Linear(2 * TIME_FREQUENCIES, H, bias=False)
            nn.init.zeros_(self.time_proj.weight)  # training starts from the model without it
        if cfg.question_encoder == "minilm":
            self.questions_model = MiniLMQuestions(cfg.max_text_tokens + 2)
            self.question_proj = nn.Sequential(nn.LayerNorm(MINILM_WIDTH), nn.Linear(MINILM_WIDTH, H))

    def forward(
        self, audio: dict, questions, answers, captions, clip_weight: float
    ) -> dict[str, torch.Tensor]:
        """One training batch -> ``{"loss", "answer", "clip"}``; ``audio`` is `multimodal.data.ALMData.audio`'s
        (under DDP the whole loss runs inside the wrapped module's forward)."""
        states, mask = states_of(self.encoder, audio)
        answer = self.answer_loss(states, mask, questions, answers)
        clip = self.contrastive_loss(self.audio_embedding(states, mask), self.text_embedding(captions))
        return {"loss": answer + clip_weight * clip, "answer": answer, "clip": clip}

    # ---------------------------------------------------------------------------------- pieces
    @property
    def token_embedding(self) -> nn.Embedding:
        return self.decoder.get_input_embeddings()

    def prefix(self, states: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Audio states ``[B, P, De]`` + mask -> the decoder's prefix ``[B, P', H]`` + mask (empty when
        the audio is withheld)."""
        if not self.cfg.audio_input:
            B = states.shape[0]
            return states.new_zeros(B, 0, self.cfg.hidden_size), mask.new_zeros(B, 0)
        prefix, pmask = self.connector(states, mask)
        if self.cfg.time_embedding:
            prefix = prefix + self.time_proj(time_features(prefix.shape[1], prefix.device)).to(prefix.dtype)
        return prefix, pmask

    def _rows(
        self,
        prefix,
        pmask,
        pieces: list[list[int]],
        questions: list[list[int]],
        texts: list[str] | None = None,
    ) -> tuple[list[torch.Tensor], list[int]]:
        """Each row's inputs: the prefix states and the token embeddings of ``<bos> question <text_start>
        answer`` (the question before the prefix when ``question_first``; read by MiniLM when
        ``question_encoder``, from ``texts`` when given, else from the pieces decoded); and the position of each
        row's ``<text_start>``, which predicts the answer's first piece."""
        emb = self.token_embedding
        device = prefix.device
        read = self._read_questions(questions, device, texts)
        rows, answer_at = [], []
        for b, (ids, q) in enumerate(zip(pieces, questions)):
            p = prefix[b][pmask[b]]
            x = emb(torch.tensor(ids, dtype=torch.long, device=device))
            head, tail = x[: 1 + len(q)], x[1 + len(q) :]  # <bos> question | <text_start> answer
            if read is not None:
                head = torch.cat([head[:1], read[b].to(head.dtype)])
            rows.append(torch.cat([head, p, tail] if self.cfg.question_first else [p, head, tail]))
            answer_at.append(len(p) + len(head))
        return rows, answer_at

    def _read_questions(
        self, questions: list[list[int]], device, texts: list[str] | None = None
    ) -> list[torch.Tensor] | None:
        """MiniLM's projected token states of each question (none for a caption's empty one), or None when
        the decoder reads the question's pieces. MiniLM reads ``texts`` when given: decoding the pieces loses
        what the sentencepiece model cannot spell ("café" -> "caf ⁇")."""
        if self.cfg.question_encoder != "minilm":
            return None
        if texts is not None and len(texts) != len(questions):
            raise ValueError(f"{len(texts)} question texts for {len(questions)} questions")
        given = texts if texts is not None else [self.vocab.decode_text(q) for q in questions]
        states = self.questions_model([t for q, t in zip(questions, given) if q], device)
        projected = self.question_proj(torch.cat(states)).split([len(s) for s in states]) if states else []
        it = iter(projected)
        empty = self.text_positions.new_zeros(0, self.cfg.hidden_size)
        return [next(it) if q else empty for q in questions]

    def answer_loss(self, states, mask, questions: list[list[int]], answers: list[list[int]]) -> torch.Tensor:
        """Mean cross-entropy of the answers' pieces and ``eos`` given audio and question (teacher forcing)."""
        v = self.vocab
        prefix, pmask = self.prefix(states, mask)
        pieces = [[v.bos_id, *q, v.special_id("text_start"), *a] for q, a in zip(questions, answers)]
        rows, answer_at = self._rows(prefix, pmask, pieces, questions)
        x, lengths = pad_rows(rows)
        L = x.shape[1]
        targets = torch.full((len(rows), L), -100, dtype=torch.long, device=x.device)
        for b, (first, a) in enumerate(zip(answer_at, answers)):  # text_start predicts the first piece
            targets[b, first : first + len(a) + 1] = torch.tensor([*a, v.eos_id], device=x.device)
        attn = (torch.arange(L, device=x.device)[None] < lengths[:, None]).long()
        logits = self.decoder(inputs_embeds=x, attention_mask=attn).logits
        return F.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100
        )

    @torch.no_grad()
    def generate(self, states, mask, questions: list[list[int]], max_new_tokens: int = 40,
                 texts: list[str] | None = None) -> list[list[int]]:  # fmt: skip
        """Greedy answers (pieces, without ``eos``) to each row's question; an empty question captions.
        ``texts``: the questions as written, for a question encoder (see `_read_questions`)."""
        v = self.vocab
        prefix, pmask = self.prefix(states, mask)
        pieces = [[v.bos_id, *q, v.special_id("text_start")] for q in questions]
        rows, _ = self._rows(prefix, pmask, pieces, questions, texts)
        L = max(len(r) for r in rows)
        x = torch.stack([F.pad(r, (0, 0, L - len(r), 0)) for r in rows])  # left-padded for generation
        attn = torch.stack([torch.arange(L, device=x.device) >= L - len(r) for r in rows]).long()
        out = self.decoder.generate(
            inputs_embeds=x, attention_mask=attn, max_new_tokens=max_new_tokens, do_sample=False,
            eos_token_id=v.eos_id, pad_token_id=v.pad_id, bos_token_id=v.bos_id,
        )  # fmt: skip
        result = []
        for row in out.tolist():
            ids = row[: row.index(v.eos_id)] if v.eos_id in row else row
            result.append([i for i in ids if v.kind_of(i) == "text"])
        return result

    # ------------------------------------------------------------------------------- alignment
    def audio_embedding(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[B, P, De]`` + mask -> unit vectors ``[B, E]`` (masked mean, then the projection)."""
        m = mask[..., None].to(states.dtype)
        pooled = (states * m).sum(1) / m.sum(1).clamp(min=1)
        return F.normalize(self.audio_proj(pooled), dim=-1)

    def text_embedding(self, pieces: list[list[int]]) -> torch.Tensor:
        """Texts' pieces -> unit vectors ``[B, E]`` (bidirectional encoder over the shared embeddings)."""
        limit = self.text_positions.shape[0]
        device = self.text_positions.device
        rows = [
            torch.tensor([self.vocab.bos_id, *p][:limit], dtype=torch.long, device=device) for p in pieces
        ]
        ids, lengths = pad_rows(rows)
        mask = torch.arange(ids.shape[1], device=device)[None] < lengths[:, None]
        x = self.token_embedding(ids) + self.text_positions[: ids.shape[1]]
        x = self.text_encoder(x, src_key_padding_mask=~mask)
        m = mask[..., None].to(x.dtype)
        return F.normalize(self.text_proj((x * m).sum(1) / m.sum(1)), dim=-1)

    def contrastive_loss(self, audio: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Symmetric InfoNCE over a batch of matching (audio, text) unit vectors."""
        logits = self.logit_scale.exp().clamp(max=100) * audio @ text.T
        labels = torch.arange(len(audio), device=audio.device)
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2

    # ------------------------------------------------------------------------------------ state
    def trainable_state(self) -> dict[str, torch.Tensor]:
        """What an ALM checkpoint holds: everything but the frozen token LM."""
        enc = {f"encoder.{k}": v for k, v in self.encoder.trainable_state().items()}
        own = {
            k: v
            for k, v in self.state_dict().items()
            if not k.startswith("encoder.") and k != "decoder.lm_head.weight"
        }  # fmt: skip  (tied)
        return {**own, **enc}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        expected = set(self.trainable_state())
        if set(state) != expected:
            missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
            raise ValueError(f"weights do not match the model: missing {missing[:5]}, unexpected {extra[:5]}")
        self.load_state_dict(state, strict=False)
