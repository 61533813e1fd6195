"""Pretrained neural codecs from HF ``transformers`` behind the `Codec` protocol of codec/tokens.py.

Three families are adapted, each loaded with `HFCodec.from_pretrained` from a hub id (network only) or a
local folder written by ``save_pretrained``; the family is read from ``config.json``'s ``model_type``:

* **EnCodec** (Défossez et al. 2022, ``EncodecModel``, e.g. ``facebook/encodec_24khz``): a causal SEANet
  encoder + LSTM and an RVQ whose depth is set by a *bandwidth*. transformers maps a bandwidth ``bw``
  (kbps) to ``floor(bw * 1000 / (log2(codebook_size) * frame_rate))`` codebooks and only accepts values in
  ``config.target_bandwidths``; we pick the smallest target bandwidth that yields at least K codebooks and
  keep the first K (an RVQ's first K codebooks do not depend on how many follow). Models that chunk the
  input (``chunk_length_s``) or normalise it (``normalize``, the 48 kHz model) are refused: their decoder
  needs one float scale per chunk, which `AudioTokens` has no place for.
* **DAC** (Kumar et al. 2023, ``DacModel``, 16/24/44 kHz): non-causal, mono; ``n_quantizers=K`` stops the
  RVQ after K codebooks. Like the original ``dac`` package, each item is right-padded with zeros to a
  multiple of the hop length, so an item of S samples has ``ceil(S / hop)`` frames.
* **Mimi** (Défossez et al. 2024, ``MimiModel``, 24 kHz, 12.5 Hz): causal SEANet + Transformer; a split RVQ
  (the first ``num_semantic_quantizers`` codebooks are semantic). ``num_quantizers=K`` gives the first K;
  K below the semantic count is encoded at the semantic count and sliced.

Batching policy (correctness over speed): none of these models masks padding exactly (EnCodec's
reflect padding and Mimi's transformer see the padded tail; DAC's convolutions are non-causal), and even
unpadded batches may pick different float kernels than a single item. So `encode` and `decode` run **one
item at a time**, each cut to its own length; the codes of an item therefore never depend on its
batch-mates or on padding. Throughput is that of batch size 1; our own codec (codec/model.py) is the
one built for batched tokenizing.

Codes are always ``[B, K, T]`` int64 on the CPU, padded with ``PAD_CODE``. ``codec_id`` is
``"hf-<family>:<hub id or folder name>@<first 12 hex of weights_sha256>"``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch

from codec.tokens import PAD_CODE, AudioTokens, as_batch, resample

SUPPORTED_MODEL_TYPES = ("encodec", "dac", "mimi")
_HASH_CHARS = 12


def weights_sha256(source: Mapping[str, torch.Tensor] | torch.nn.Module | str | Path) -> str:
    """Full sha256 hex digest of a model's weights: a state dict, a module, or a ``.safetensors`` file.

    The digest covers, for every tensor in name order: its name, dtype, shape and raw bytes, so it is the
    same for a model in memory and the same model after ``save_pretrained`` / ``from_pretrained``. A file is
    hashed under the tensor names it stores: that equals the in-memory hash only where the library saves
    state-dict names unchanged (EnCodec and DAC do; transformers 5 renames Mimi's keys on save), so
    `HFCodec` always hashes the loaded model.
    """
    if isinstance(source, torch.nn.Module):
        state = source.state_dict()
    elif isinstance(source, (str, Path)):
        path = Path(source)
        if path.suffix != ".safetensors" or not path.is_file():
            raise ValueError(
                f"weights_sha256 needs a .safetensors file, got {path}; pass a state dict instead."
            )
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = source
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        # a uint8 view gives the exact bytes for every dtype numpy lacks (bfloat16, float8)
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def read_model_type(path: str | Path) -> str | None:
    """``model_type`` from a local folder's ``config.json``, or None if the folder has none."""
    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        return None
    try:
        config = json.loads(config_file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(
            f"{config_file} is not valid JSON ({err}); re-save the model with save_pretrained."
        ) from err
    return config.get("model_type") if isinstance(config, dict) else None


class HFCodec:
    """A `transformers` codec model behind the `Codec` protocol. Build it with `HFCodec.from_pretrained`.

    Subclasses say how to encode one item (``_encode_item``) and decode one item (``_decode_item``); this
    class does resampling, channel mapping, per-item lengths, padding and validation.
    """

    family = "hf"

    def __init__(self, model: torch.nn.Module, name: str, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        # float32 whatever the checkpoint's dtype, so codes and the weights hash do not depend on how it was saved
        self.model = model.float().to(self.device).eval().requires_grad_(False)
        config = model.config
        self.sample_rate: int = int(config.sampling_rate)
        self.channels: int = int(getattr(config, "audio_channels", 1))
        self.codebook_size: int = int(config.codebook_size)
        self.num_codebooks: int = self._max_codebooks()
        self.hop_length: int = self._hop_length()
        # exact, unlike transformers' own ``config.frame_rate`` which rounds up to an int for EnCodec/DAC
        self.frame_rate: float = self.sample_rate / self.hop_length
        self.weights_sha256: str = weights_sha256(self.model)
        self.codec_id: str = f"hf-{self.family}:{name}@{self.weights_sha256[:_HASH_CHARS]}"

    # ------------------------------------------------------------------ construction
    @staticmethod
    def from_pretrained(id_or_path: str | Path, device: str = "cpu") -> HFCodec:
        """Load an EnCodec, DAC or Mimi model from a local ``save_pretrained`` folder or a hub id.

        A hub id needs the network (or the HF cache); a local folder never touches it. The family is
        chosen by ``config.json``'s ``model_type``.
        """
        path = Path(id_or_path)
        if path.is_dir():
            model_type = read_model_type(path)
            if model_type is None:
                raise ValueError(
                    f"{path} has no config.json with a model_type; write it with save_pretrained."
                )
            name = path.resolve().name
        else:
            from transformers import AutoConfig

            model_type = AutoConfig.from_pretrained(str(id_or_path)).model_type
            name = str(id_or_path)
        adapters: dict[str, type[HFCodec]] = {"encodec": EncodecCodec, "dac": DacCodec, "mimi": MimiCodec}
        if model_type not in adapters:
            raise ValueError(
                f"{id_or_path} is a {model_type!r} model; the adapters support model_type "
                f"{', '.join(SUPPORTED_MODEL_TYPES)}."
            )
        adapter = adapters[model_type]
        with quiet_progress_bars():
            model = adapter._model_class().from_pretrained(str(id_or_path))
        return adapter(model, name=name, device=device)

    @staticmethod
    def _model_class() -> type:
        raise NotImplementedError

    def _max_codebooks(self) -> int:
        raise NotImplementedError

    def _hop_length(self) -> int:
        raise NotImplementedError

    def _encode_item(self, wav: torch.Tensor, num_codebooks: int) -> torch.Tensor:
        """``wav [1, C, S]`` at the model rate -> codes ``[num_codebooks, T]``."""
        raise NotImplementedError

    def _decode_item(self, codes: torch.Tensor) -> torch.Tensor:
        """codes ``[1, K, T]`` -> audio ``[1, C, S']`` (S' about T * hop_length)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ the Codec protocol
    @torch.inference_mode()
    def encode(
        self,
        wav: torch.Tensor,
        sample_rate: int,
        num_codebooks: int | None = None,
        lengths: torch.Tensor | None = None,
    ) -> AudioTokens:
        """Encode ``wav`` (``[S]``, ``[C, S]`` or ``[B, C, S]`` at ``sample_rate``) -> codes ``[B, K, T]``.

        ``lengths [B]``: valid samples per item at ``sample_rate`` when ``wav`` is a padded batch (default:
        all of it). Each item is cut to its length, resampled alone and encoded alone (see the module
        docstring), so its codes equal those of encoding it on its own. ``num_codebooks=k`` gives the
        first k codebooks of the full encoding (default: all ``self.num_codebooks``).
        """
        k = self.num_codebooks if num_codebooks is None else int(num_codebooks)
        if not 1 <= k <= self.num_codebooks:
            raise ValueError(
                f"num_codebooks must be in [1, {self.num_codebooks}] for {self.codec_id}, got {k}"
            )
        batch = as_batch(wav, self.channels)  # (B, C, S)
        if lengths is None:
            lengths = torch.full((batch.shape[0],), batch.shape[-1], dtype=torch.long)
        if lengths.shape != (batch.shape[0],):
            raise ValueError(f"lengths must be [B] with B={batch.shape[0]}, got shape {tuple(lengths.shape)}")
        items = []
        for b, length in enumerate(lengths.tolist()):
            if not 0 < length <= batch.shape[-1]:
                raise ValueError(f"item {b} has length {length}; lengths must be in [1, {batch.shape[-1]}]")
            item = resample(batch[b : b + 1, :, :length], int(sample_rate), self.sample_rate)  # (1, C, S_b)
            codes = self._encode_item(item.to(self.device), k)  # (k, T_b)
            items.append(codes.long().cpu())
        return AudioTokens.from_items(items, self.frame_rate, self.codebook_size, self.codec_id)

    @torch.inference_mode()
    def decode(self, tokens: AudioTokens) -> torch.Tensor:
        """Decode ``tokens`` (any K <= num_codebooks) -> float ``[B, channels, S]`` at ``self.sample_rate``.

        Item b has ``lengths[b] * hop_length`` samples; the rest of the row is zeros. Items are decoded
        one at a time, so padding codes never reach the model.
        """
        self._check_tokens(tokens)
        lengths = tokens.lengths.tolist()
        out = torch.zeros(tokens.batch_size, self.channels, max(lengths, default=0) * self.hop_length)
        for b, frames in enumerate(lengths):
            if frames == 0:
                continue
            wav = self._decode_item(tokens.codes[b : b + 1, :, :frames].to(self.device)).float().cpu()
            samples = min(wav.shape[-1], frames * self.hop_length)
            out[b, :, :samples] = wav[0, :, :samples]  # (C, S_b)
        return out

    def _check_tokens(self, tokens: AudioTokens) -> None:
        own_hash = self.codec_id.rsplit("@", 1)[-1]
        if tokens.codec_id.rsplit("@", 1)[-1] != own_hash:
            raise ValueError(
                f"these tokens were made by {tokens.codec_id}, not {self.codec_id}; decode them with that codec."
            )
        if tokens.num_codebooks > self.num_codebooks:
            raise ValueError(
                f"tokens have {tokens.num_codebooks} codebooks; {self.codec_id} has {self.num_codebooks}"
            )
        for b, frames in enumerate(tokens.lengths.tolist()):
            valid = tokens.codes[b, :, :frames]
            if valid.numel() and (valid.min() < 0 or valid.max() >= self.codebook_size):
                raise ValueError(
                    f"item {b} has codes outside [0, {self.codebook_size}) within its length "
                    f"(PAD_CODE={PAD_CODE} belongs only past lengths[b])"
                )

    def to(self, device: str | torch.device) -> HFCodec:
        """Move the model to ``device``; inputs follow it, outputs stay on the CPU."""
        self.device = torch.device(device)
        self.model.to(self.device)
        for module in self.model.modules():
            if getattr(module, "_embed", None) is not None:
                module._embed = None  # Mimi caches its codebooks on the old device; recompute them
        return self

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.codec_id}, {self.sample_rate} Hz, {self.channels} ch, "
            f"{self.frame_rate:g} frames/s, K={self.num_codebooks} x {self.codebook_size})"
        )


class EncodecCodec(HFCodec):
    """EnCodec (``EncodecModel``). K codebooks <-> the smallest ``target_bandwidths`` entry giving >= K."""

    family = "encodec"

    def __init__(self, model: torch.nn.Module, name: str, device: str | torch.device = "cpu") -> None:
        config = model.config
        if config.chunk_length_s is not None or config.normalize:
            raise ValueError(
                f"EnCodec model {name} chunks or normalises its input (chunk_length_s={config.chunk_length_s}, "
                f"normalize={config.normalize}), so decoding needs per-chunk scales that AudioTokens cannot "
                "carry; use an unchunked model such as facebook/encodec_24khz."
            )
        super().__init__(model, name, device)

    @staticmethod
    def _model_class() -> type:
        from transformers import EncodecModel

        return EncodecModel

    def _max_codebooks(self) -> int:
        return max(self._codebooks_at(bw) for bw in self.model.config.target_bandwidths)

    def _hop_length(self) -> int:
        return math.prod(self.model.config.upsampling_ratios)

    def _codebooks_at(self, bandwidth: float) -> int:
        return self.model.quantizer.get_num_quantizers_for_bandwidth(bandwidth)

    def bandwidth_for(self, num_codebooks: int) -> float:
        """The smallest target bandwidth (kbps) whose RVQ depth is at least ``num_codebooks``."""
        for bandwidth in sorted(self.model.config.target_bandwidths):
            if self._codebooks_at(bandwidth) >= num_codebooks:
                return bandwidth
        raise ValueError(
            f"{self.codec_id} has at most {self.num_codebooks} codebooks, asked for {num_codebooks}"
        )

    def _encode_item(self, wav: torch.Tensor, num_codebooks: int) -> torch.Tensor:
        out = self.model.encode(wav, bandwidth=self.bandwidth_for(num_codebooks), return_dict=True)
        return out.audio_codes[0, 0, :num_codebooks]  # (nb_chunks=1, B=1, K_bw, T) -> (K, T)

    def _decode_item(self, codes: torch.Tensor) -> torch.Tensor:
        return self.model.decode(codes[None], [None], return_dict=True).audio_values  # (1, C, S)


class DacCodec(HFCodec):
    """Descript Audio Codec (``DacModel``), mono; ``n_quantizers`` = K."""

    family = "dac"

    @staticmethod
    def _model_class() -> type:
        from transformers import DacModel

        return DacModel

    def _max_codebooks(self) -> int:
        return int(self.model.config.n_codebooks)

    def _hop_length(self) -> int:
        return int(self.model.config.hop_length)

    def _encode_item(self, wav: torch.Tensor, num_codebooks: int) -> torch.Tensor:
        # right-pad to a whole number of hops, as the dac package does, so frames = ceil(S / hop)
        pad = -wav.shape[-1] % self.hop_length
        wav = torch.nn.functional.pad(wav, (0, pad))
        out = self.model.encode(wav, n_quantizers=num_codebooks, return_dict=True)
        return out.audio_codes[0, :num_codebooks]  # (1, K, T) -> (K, T)

    def _decode_item(self, codes: torch.Tensor) -> torch.Tensor:
        wav = self.model.decode(audio_codes=codes, return_dict=True).audio_values  # (1, S): DAC is mono
        return wav[:, None]  # (1, 1, S)


class MimiCodec(HFCodec):
    """Kyutai's Mimi (``MimiModel``); ``num_quantizers`` = K, at least the semantic codebooks."""

    family = "mimi"

    @staticmethod
    def _model_class() -> type:
        from transformers import MimiModel

        return MimiModel

    def _max_codebooks(self) -> int:
        return int(self.model.config.num_quantizers)

    def _hop_length(self) -> int:
        return round(self.model.config.sampling_rate / self.model.config.frame_rate)

    def _encode_item(self, wav: torch.Tensor, num_codebooks: int) -> torch.Tensor:
        # Mimi refuses fewer codebooks than its semantic RVQ has; the extra ones are sliced off
        asked = max(num_codebooks, int(self.model.config.num_semantic_quantizers))
        out = self.model.encode(wav, num_quantizers=asked, return_dict=True)
        return out.audio_codes[0, :num_codebooks]  # (1, K, T) -> (K, T)

    def _decode_item(self, codes: torch.Tensor) -> torch.Tensor:
        return self.model.decode(codes, return_dict=True).audio_values  # (1, C, S)


@contextlib.contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """Hide transformers' tqdm bars ("Loading weights", "Writing model shards") inside the block only.

    They would interleave with our own progress output on every adapter load. transformers switches
    huggingface_hub's download bars with its own, so a hub download inside the block is silent too. The
    previous setting is restored on exit, so a caller that wants the bars elsewhere keeps them.
    """
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def save_tiny_random_model(kind: str, path: str | Path, sample_rate: int = 16000, seed: int = 0) -> Path:
    """Write a tiny randomly initialised ``kind`` model (encodec, dac or mimi) with ``save_pretrained``.

    For tests and offline demos: a few thousand weights, 4 codebooks of 64 entries, loadable by
    `HFCodec.from_pretrained(path)` and ``load_codec(path)``. transformers initialises RVQ codebooks to
    zeros (they are learned by k-means), which would map every frame to code 0, so they are drawn at random.
    """
    import transformers as tf

    configs = {
        # hop 16, 1000 frames/s at 16 kHz, 6 bits -> 6 kbps per codebook: 6/12/24 kbps give 1/2/4 codebooks
        "encodec": lambda: tf.EncodecConfig(
            sampling_rate=sample_rate,
            hidden_size=16,
            num_filters=4,
            upsampling_ratios=[4, 4],
            codebook_size=64,
            target_bandwidths=[6.0, 12.0, 24.0],
            num_lstm_layers=1,
        ),
        "dac": lambda: tf.DacConfig(
            sampling_rate=sample_rate,
            encoder_hidden_size=4,
            downsampling_ratios=[2, 4],
            decoder_hidden_size=16,
            n_codebooks=4,
            codebook_size=64,
            codebook_dim=4,
        ),
        "mimi": lambda: tf.MimiConfig(
            sampling_rate=sample_rate,
            hidden_size=16,
            num_filters=4,
            upsampling_ratios=[4, 4],
            codebook_size=64,
            codebook_dim=8,
            num_quantizers=4,
            vector_quantization_hidden_dimension=8,
            upsample_groups=16,
            num_hidden_layers=1,
            intermediate_size=32,
            num_attention_heads=2,
            num_key_value_heads=2,
            sliding_window=16,
            max_position_embeddings=512,
        ),
    }
    if kind not in configs:
        raise ValueError(f"unknown model kind {kind!r}; choose one of {', '.join(SUPPORTED_MODEL_TYPES)}")
    model_class = {"encodec": tf.EncodecModel, "dac": tf.DacModel, "mimi": tf.MimiModel}[kind]
    torch.manual_seed(seed)
    model = model_class(configs[kind]())
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith((".embed", ".embed_sum")):
                buffer.normal_(std=0.05)  # about the scale of a random encoder's latents
    with quiet_progress_bars():
        model.save_pretrained(str(path))
    return Path(path)
