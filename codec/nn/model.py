"""The audiotok codec: STFT encoder, ConvNeXt stacks at the frame rate, factorized RVQ, iSTFT decoder.

Architecture (choices made for CPU speed; see ANCHORS.md, DAC #51 "4x slower than EnCodec"):

* Encoder: log-magnitude STFT (window ``n_fft = 4 * hop``) -> Conv1d -> ConvNeXt blocks, all at the
  frame rate (50 Hz by default). No strided waveform convolutions as in SEANet/EnCodec, which spend
  most of their compute at high sample rates.
* Quantizer: factorized, L2-normalised residual VQ with quantizer dropout (codec/quantize.py, after DAC).
* Decoder: ConvNeXt blocks at the frame rate, then a Vocos-style head predicting STFT magnitude and
  phase, synthesised by overlap-add (Siuzdak 2023, "Vocos"; WavTokenizer uses the same head).

Exactness properties the tests check:

* every layer has a finite receptive field and activations past an item's valid frames are zeroed
  after each block, so an item's codes do not depend on batch-mates or padding;
* ``AudiotokCodec.encode`` processes long inputs in hop-aligned chunks with ``context_frames`` of
  overlap on both sides, more than the receptive field, so chunked codes equal one-pass codes;
* with ``causal=True`` every frame depends only on the past: encoding a stream piece by piece
  (``StreamingEncoder``) equals encoding it whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from codec.nn.quantize import LibraryResidualVQ, ResidualVectorQuantizer, RVQOutput
from codec.tokens import PAD_CODE, AudioTokens, as_batch, resample

FORMAT = "audiotok-codec"
FORMAT_VERSION = 1


@dataclass
class CodecConfig:
    """Hyper-parameters of the codec. ``frame_rate = sample_rate / hop_length``."""

    sample_rate: int = 16000
    hop_length: int = 320
    n_fft: int = 1280
    encoder_dim: int = 256
    encoder_layers: int = 6
    decoder_dim: int = 384
    decoder_layers: int = 8
    mlp_ratio: int = 3
    kernel_size: int = 7
    latent_dim: int = 256
    num_codebooks: int = 12
    codebook_size: int = 1024
    codebook_dim: int = 8
    quantizer_dropout: float = 0.5
    causal: bool = False
    quantizer: str = "factorized"  # or "vqpytorch" (vector-quantize-pytorch ResidualVQ; for comparison)
    frontend: str = "logmag"  # encoder input: "logmag" (log |STFT|) or "phase" (log |STFT| + unit phasor)
    # Synthesis frames per codec frame: the iSTFT head overlap-adds this many frames of n_fft / r samples
    # at hop / r per codec frame (1: one 80 ms window every 20 ms at the defaults; 2: 40 ms every 10 ms).
    head_upsample: int = 1

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def receptive_frames(self) -> int:
        """Frames of context on either side that can influence a frame's latent (an upper bound)."""
        stft = math.ceil(self.n_fft / self.hop_length)
        return (
            stft
            + 1
            + self.encoder_layers * (self.kernel_size // 2 if not self.causal else self.kernel_size - 1)
        )

    @staticmethod
    def from_dict(values: dict) -> CodecConfig:
        known = {f.name for f in fields(CodecConfig)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown codec config keys: {sorted(unknown)}; known keys: {sorted(known)}")
        return CodecConfig(**values)


@contextlib.contextmanager
def full_fp32() -> Iterator[None]:
    """Full-precision float32 matmuls and convolutions (no TF32) inside the block, restored after.

    Codes are argmin decisions: on an H100, TF32 changed 8-21% of the codes of the bundled examples
    against the CPU, full fp32 0.04% (BENCHMARKS.md, "Codec on CUDA"). Encoding runs in full fp32 so a
    store's codes do not depend on the GPU or on a global setting made elsewhere in the program."""
    matmul = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(
            enabled=torch.backends.cudnn.enabled,
            benchmark=torch.backends.cudnn.benchmark,
            deterministic=torch.backends.cudnn.deterministic,
            allow_tf32=False,
        ):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul


def frame_mask(lengths: torch.Tensor, num_frames: int) -> torch.Tensor:
    """lengths ``[B]`` -> float mask ``[B, 1, T]`` (1 on valid frames)."""
    t = torch.arange(num_frames, device=lengths.device)
    return (t[None, :] < lengths[:, None]).float()[:, None, :]


class ConvNeXtBlock(nn.Module):
    """Depthwise conv + LayerNorm + pointwise MLP with layer scale (Liu et al. 2022; as in Vocos)."""

    def __init__(self, dim: int, hidden: int, kernel_size: int, causal: bool):
        super().__init__()
        self.pad = (kernel_size - 1, 0) if causal else (kernel_size // 2, kernel_size // 2)
        self.dwconv = nn.Conv1d(dim, dim, kernel_size, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pw1 = nn.Linear(dim, hidden)
        self.pw2 = nn.Linear(hidden, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 0.1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x ``[B, D, T]``, mask ``[B, 1, T]``."""
        y = self.dwconv(F.pad(x, self.pad))  # (B, D, T)
        y = self.pw2(F.gelu(self.pw1(self.norm(y.transpose(1, 2)))))  # (B, T, D)
        return (x + (self.gamma * y).transpose(1, 2)) * mask


class Backbone(nn.Module):
    """Conv1d in-projection, ConvNeXt blocks, final LayerNorm. ``[B, C_in, T] -> [B, T, D]``."""

    def __init__(self, in_dim: int, dim: int, layers: int, mlp_ratio: int, kernel_size: int, causal: bool):
        super().__init__()
        self.pad = (2, 0) if causal else (1, 1)
        self.proj = nn.Conv1d(in_dim, dim, 3)
        self.blocks = nn.ModuleList(
            [ConvNeXtBlock(dim, dim * mlp_ratio, kernel_size, causal) for _ in range(layers)]
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.proj(F.pad(x, self.pad)) * mask  # (B, D, T)
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x.transpose(1, 2))  # (B, T, D)


class STFTFrontend(nn.Module):
    """Frames the waveform so that frame ``t`` covers samples ``[t*hop - left, t*hop - left + n_fft)``.

    Non-causal: the window is centred on the frame's own hop; causal: it ends with the frame's hop.
    Both pad with zeros, so an item alone and the same item zero-padded in a batch see the same input.
    """

    def __init__(self, n_fft: int, hop: int, causal: bool, kind: str = "logmag"):
        super().__init__()
        if kind not in ("logmag", "phase"):
            raise ValueError(f"unknown frontend {kind!r}; use 'logmag' or 'phase'")
        self.n_fft, self.hop, self.kind = n_fft, hop, kind
        self.left = n_fft - hop if causal else (n_fft - hop) // 2
        self.channels = (n_fft // 2 + 1) * (1 if kind == "logmag" else 3)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """wav ``[B, S]`` with ``S`` a multiple of hop -> ``[B, channels, S//hop]``: the log-magnitude
        (``logmag``), followed by the real and imaginary parts of the unit phasor (``phase``)."""
        T = wav.shape[-1] // self.hop
        x = F.pad(wav, (self.left, self.n_fft - self.hop - self.left))
        spec = torch.stft(x, self.n_fft, self.hop, window=self.window, center=False, return_complex=True)[
            ..., :T
        ]  # (B, F, T)
        mag = spec.abs().clamp(min=1e-5)
        if self.kind == "logmag":
            return torch.log(mag)
        phasor = spec / mag
        return torch.cat([torch.log(mag), phasor.real, phasor.imag], dim=1)


class ISTFTHead(nn.Module):
    """Predicts magnitude and phase per frame and overlap-adds (Vocos head), inverse of STFTFrontend.

    With ``upsample = r > 1`` each codec frame predicts r synthesis frames of ``n_fft / r`` samples at
    ``hop / r``: the same overlap (and the same output length and causality), r times the time resolution.
    Synthesis frame ``u`` covers output samples ``[u*hop - left, u*hop - left + n_fft)`` in its own units,
    the framing of STFTFrontend."""

    def __init__(self, dim: int, n_fft: int, hop: int, causal: bool, upsample: int = 1):
        super().__init__()
        if upsample < 1 or n_fft % upsample or hop % upsample:
            raise ValueError(f"head_upsample {upsample} must be >= 1 and divide n_fft {n_fft} and hop {hop}")
        self.upsample = upsample
        self.n_fft, self.hop = n_fft // upsample, hop // upsample
        self.left = self.n_fft - self.hop if causal else (self.n_fft - self.hop) // 2
        self.out = nn.Linear(dim, upsample * (self.n_fft + 2))
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x ``[B, T, D]``, mask ``[B, 1, T]`` -> wav ``[B, T*hop]``. Frames past an item's end are
        silenced so they cannot overlap-add into its last valid samples."""
        B, T, _ = x.shape
        y = self.out(x).float().reshape(B, T * self.upsample, self.n_fft + 2)  # (B, T*r, 2F)
        log_mag, phase = y.chunk(2, dim=-1)  # (B, T*r, F) each
        return self.synthesize(log_mag, phase, mask.repeat_interleave(self.upsample, dim=-1))

    def synthesize(self, log_mag: torch.Tensor, phase: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Overlap-add frames of log-magnitude and phase ``[B, T, F]`` -> wav ``[B, T*hop]``."""
        B, T, _ = log_mag.shape
        mag = torch.exp(log_mag).clamp(max=1e2)
        spec = torch.polar(mag, phase)  # (B, T, F) complex
        frames = torch.fft.irfft(spec, n=self.n_fft, dim=-1) * self.window  # (B, T, n_fft)
        frames = frames * mask.transpose(1, 2)
        total = (T - 1) * self.hop + self.n_fft
        wav = F.fold(
            frames.transpose(1, 2), (1, total), kernel_size=(1, self.n_fft), stride=(1, self.hop)
        ).reshape(B, total)
        weights = (self.window**2)[None, None, :] * mask.transpose(1, 2)  # (B, T, n_fft)
        envelope = F.fold(weights.transpose(1, 2), (1, total), (1, self.n_fft), stride=(1, self.hop)).reshape(
            B, total
        )
        wav = wav / envelope.clamp(min=1e-3)
        return wav[:, self.left : self.left + T * self.hop]

    @torch.no_grad()
    def load_coarser(self, coarse: ISTFTHead) -> None:
        """Set this head (``upsample`` r) from a head with one frame per codec frame, so that for steady
        sounds it synthesises what ``coarse`` does; fine-tuning then uses the finer time resolution.

        Sub-frame s of codec frame t starts ``d_s = s*hop - left + coarse.left`` samples after the coarse
        frame. Its bin j has the frequency of coarse bin ``j*r``; a partial at that frequency advances in
        phase by ``2*pi*j*d_s / n_fft`` over ``d_s`` samples, so the phase row is the coarse row plus that
        constant (a bias shift). The log-magnitude row is the coarse row plus ``log g``, the gain at which a
        partial on a coarse bin comes out of this head's overlap-add at the coarse head's amplitude.
        Partials between the sampled bins come through by the coarse window's leakage only (an
        approximation, and the reason this is a starting point for training, not a conversion)."""
        r = self.upsample
        if coarse.upsample != 1 or coarse.n_fft != self.n_fft * r or coarse.hop != self.hop * r:
            raise ValueError(
                "load_coarser needs a head with one frame per codec frame and this head's framing"
            )
        F_c, F = coarse.n_fft // 2 + 1, self.n_fft // 2 + 1
        W, b = coarse.out.weight, coarse.out.bias  # (2*F_c, D), (2*F_c,)
        bins = torch.arange(F) * r  # coarse bin of each of our bins
        # A partial of amplitude A has coarse bin magnitude A * sum(w_c) / 2; one bin of magnitude M here
        # overlap-adds to a partial of amplitude (2 M / n_fft) * sum(w) / sum(w^2) (synthesize divides by
        # the overlap-added w^2), so M = gain * (coarse magnitude) keeps A.
        w, w_c = self.window.double(), coarse.window.double()
        gain = (self.n_fft * (w**2).sum() / w.sum() / w_c.sum()).item()
        j = torch.arange(F, dtype=torch.float64)
        weight = torch.empty_like(self.out.weight).reshape(r, 2 * F, -1)
        bias = torch.empty_like(self.out.bias).reshape(r, 2 * F)
        for s in range(r):
            shift = s * self.hop - self.left + coarse.left
            weight[s, :F], weight[s, F:] = W[bins], W[F_c + bins]
            bias[s, :F] = b[bins] + math.log(gain)
            bias[s, F:] = (
                b[F_c + bins] + (2 * math.pi * j * shift / self.n_fft).remainder(2 * math.pi).float()
            )
        self.out.weight.copy_(weight.reshape_as(self.out.weight))
        self.out.bias.copy_(bias.reshape_as(self.out.bias))


@dataclass
class CodecOutput:
    """Training forward pass result."""

    wav: torch.Tensor  # [B, S] reconstruction
    latents: torch.Tensor  # [B, T, D] encoder output before quantization
    rvq: RVQOutput


class CodecModel(nn.Module):
    """Encoder + RVQ + decoder. Works on mono ``[B, S]`` float waveforms at ``config.sample_rate``."""

    def __init__(self, config: CodecConfig):
        super().__init__()
        c = self.config = config
        if c.n_fft % c.hop_length or c.n_fft < c.hop_length:
            raise ValueError("n_fft must be a multiple of hop_length")
        self.frontend = STFTFrontend(c.n_fft, c.hop_length, c.causal, c.frontend)
        self.encoder = Backbone(
            self.frontend.channels, c.encoder_dim, c.encoder_layers, c.mlp_ratio, c.kernel_size, c.causal
        )
        self.to_latent = nn.Linear(c.encoder_dim, c.latent_dim)
        if c.quantizer == "factorized":
            self.quantizer = ResidualVectorQuantizer(
                c.latent_dim, c.num_codebooks, c.codebook_size, c.codebook_dim, c.quantizer_dropout
            )
        elif c.quantizer == "vqpytorch":
            self.quantizer = LibraryResidualVQ(
                c.latent_dim, c.num_codebooks, c.codebook_size, c.codebook_dim, c.quantizer_dropout
            )
        else:
            raise ValueError(f"unknown quantizer {c.quantizer!r}; use 'factorized' or 'vqpytorch'")
        self.decoder = Backbone(
            c.latent_dim, c.decoder_dim, c.decoder_layers, c.mlp_ratio, c.kernel_size, c.causal
        )
        self.head = ISTFTHead(c.decoder_dim, c.n_fft, c.hop_length, c.causal, c.head_upsample)

    def _pad_to_hop(self, wav: torch.Tensor) -> torch.Tensor:
        return F.pad(wav, (0, (-wav.shape[-1]) % self.config.hop_length))

    def encode_latents(self, wav: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """wav ``[B, S]`` (zero past each item's end), frames ``[B]`` valid frames -> latents ``[B, T, D]``."""
        wav = self._pad_to_hop(wav)
        mask = frame_mask(frames, wav.shape[-1] // self.config.hop_length)
        features = self.frontend(wav) * mask  # (B, F, T)
        return self.to_latent(self.encoder(features, mask)) * mask.transpose(1, 2)  # (B, T, D)

    def decode_latents(self, quantized: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """quantized ``[B, T, D]`` -> wav ``[B, T*hop]``."""
        mask = frame_mask(frames, quantized.shape[1])
        return self.head(self.decoder(quantized.transpose(1, 2) * mask, mask), mask)

    def forward(self, wav: torch.Tensor, num_codebooks: int | None = None) -> CodecOutput:
        """Training pass on equal-length segments ``[B, S]`` (S a multiple of hop)."""
        frames = torch.full((wav.shape[0],), wav.shape[-1] // self.config.hop_length, device=wav.device)
        latents = self.encode_latents(wav, frames)
        # Nearest-code search in fp32 even under mixed precision: bf16 cosines would tie and flip codes.
        with torch.autocast(wav.device.type, enabled=False):
            rvq = self.quantizer(latents.float(), num_codebooks)
        return CodecOutput(
            wav=self.decode_latents(rvq.quantized, frames)[:, : wav.shape[-1]], latents=latents, rvq=rvq
        )


def weights_hash(model: nn.Module) -> str:
    """sha256 over the state dict's names, shapes and fp16 values (stable across save/load in fp16)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(
            tensor.detach()
            .to(torch.float16 if tensor.is_floating_point() else tensor.dtype)
            .cpu()
            .numpy()
            .tobytes()
        )
    return h.hexdigest()


class AudiotokCodec:
    """The audiotok codec behind the `Codec` protocol of codec/tokens.py.

    ``chunk_seconds``: inputs longer than this are encoded in hop-aligned chunks with
    ``receptive_frames + 2`` frames of overlap each side; codes equal the one-pass codes.
    """

    channels = 1

    def __init__(self, model: CodecModel, name: str = "audiotok", chunk_seconds: float = 30.0):
        self.model = model.eval()
        self.config = model.config
        self.sample_rate = model.config.sample_rate
        self.frame_rate = model.config.frame_rate
        self.codebook_size = model.config.codebook_size
        self.num_codebooks = model.config.num_codebooks
        self.hop_length = model.config.hop_length
        self.chunk_frames = max(1, int(chunk_seconds * self.frame_rate))
        self.context_frames = model.config.receptive_frames + 2
        self.weights_sha256 = weights_hash(model)
        self.codec_id = f"{name}-{self.sample_rate // 1000}k@{self.weights_sha256[:12]}"

    # ---------------------------------------------------------------- loading and saving
    @staticmethod
    def from_pretrained(path: str | Path, device: str = "cpu") -> AudiotokCodec:
        """Load a folder with ``config.json`` (format ``audiotok-codec``) and ``model.safetensors``."""
        from safetensors.torch import load_file

        path = Path(path)
        config_file = path / "config.json"
        if not config_file.is_file():
            raise FileNotFoundError(
                f"{config_file} not found: an audiotok codec folder holds config.json and model.safetensors"
            )
        meta = json.loads(config_file.read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"{config_file} is not an audiotok codec config (format={meta.get('format')!r})")
        if meta.get("format_version", 0) > FORMAT_VERSION:
            raise ValueError(
                f"{config_file} has format_version {meta['format_version']}; upgrade audiotok to load it"
            )
        model = CodecModel(CodecConfig.from_dict(meta["model"]))
        state = load_file(str(path / "model.safetensors"))
        state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
        model.load_state_dict(state)
        return AudiotokCodec(model.to(device), name=meta.get("name", "audiotok"))

    def save_pretrained(self, path: str | Path, extra: dict | None = None) -> None:
        """Write fp16 safetensors and a JSON config (plus ``extra`` keys such as the recipe)."""
        save_codec(self.model, path, name=self.codec_id.split("-")[0], extra=extra)

    # ---------------------------------------------------------------- the Codec protocol
    @torch.inference_mode()
    def encode(
        self,
        wav: torch.Tensor,
        sample_rate: int,
        num_codebooks: int | None = None,
        lengths: torch.Tensor | None = None,
    ) -> AudioTokens:
        """wav ``[S]``, ``[C, S]`` or ``[B, C, S]`` at ``sample_rate`` -> AudioTokens ``[B, K, T]``."""
        k = num_codebooks or self.num_codebooks
        if not 1 <= k <= self.num_codebooks:
            raise ValueError(f"num_codebooks must be in [1, {self.num_codebooks}], got {k}")
        x = as_batch(wav, 1)[:, 0]  # (B, S)
        device = next(self.model.parameters()).device
        if lengths is None:
            lengths = torch.full((x.shape[0],), x.shape[-1], dtype=torch.long)
        if sample_rate != self.sample_rate:
            x = resample(x, sample_rate, self.sample_rate)
            lengths = (
                torch.ceil(lengths.double() * self.sample_rate / sample_rate).long().clamp(max=x.shape[-1])
            )
        x = x.to(device)
        # Zero everything past each item's end so padding cannot leak into its codes.
        x = x * (torch.arange(x.shape[-1], device=device)[None] < lengths.to(device)[:, None])
        frames = torch.div(lengths + self.hop_length - 1, self.hop_length, rounding_mode="floor").clamp(min=1)
        with full_fp32():
            codes = self._encode_chunked(x, frames.to(device), k)
        codes = codes.masked_fill(~frame_mask(frames.to(device), codes.shape[-1]).bool(), PAD_CODE)
        return AudioTokens(codes.cpu(), frames.cpu(), self.frame_rate, self.codebook_size, self.codec_id)

    def _encode_chunked(self, x: torch.Tensor, frames: torch.Tensor, k: int) -> torch.Tensor:
        """Encode ``[B, S]`` in chunks of ``chunk_frames`` with ``context_frames`` overlap -> ``[B, K, T]``."""
        hop, total = self.hop_length, int(frames.max())
        x = F.pad(x, (0, max(0, total * hop - x.shape[-1])))
        pieces = []
        for start in range(0, total, self.chunk_frames):
            stop = min(start + self.chunk_frames, total)
            lo, hi = max(0, start - self.context_frames), min(total, stop + self.context_frames)
            piece_frames = (frames - lo).clamp(min=0, max=hi - lo)
            latents = self.model.encode_latents(x[:, lo * hop : hi * hop], piece_frames)
            codes = self.model.quantizer(latents, k).codes  # (B, K, hi - lo)
            pieces.append(codes[:, :, start - lo : stop - lo])
        return torch.cat(pieces, dim=-1)

    @torch.inference_mode()
    def decode(self, tokens: AudioTokens) -> torch.Tensor:
        """AudioTokens -> wav ``[B, 1, T*hop]``, zero past each item's frames."""
        device = next(self.model.parameters()).device
        codes = tokens.codes.to(device).clamp(min=0)  # PAD -> 0; masked below
        frames = tokens.lengths.to(device)
        quantized = self.model.quantizer.decode_codes(codes)  # (B, T, D)
        wav = self.model.decode_latents(quantized, frames)  # (B, T*hop)
        samples = frames * self.hop_length
        wav = wav * (torch.arange(wav.shape[-1], device=device)[None] < samples[:, None])
        return wav[:, None].cpu()


class StreamingEncoder:
    """Encodes a stream piece by piece with a causal codec; the codes equal one-pass encoding.

    Keeps ``context_frames`` hops of already-encoded samples as left context and re-encodes them with
    each new piece (cheap: the context is under a second), emitting only the new frames' codes.
    Samples that do not fill a whole hop wait for the next piece; ``flush()`` zero-pads the tail.
    """

    def __init__(self, codec: AudiotokCodec, num_codebooks: int | None = None):
        if not codec.config.causal:
            raise ValueError("StreamingEncoder needs a causal codec (config causal: true)")
        self.codec, self.k = codec, num_codebooks or codec.num_codebooks
        self.buffer = torch.zeros(0)
        self.buffer_start = 0  # absolute sample index of buffer[0]; always hop-aligned
        self.emitted_frames = 0

    def push(self, samples: torch.Tensor) -> torch.Tensor:
        """Mono samples ``[S]`` at the codec rate -> codes ``[K, T_new]`` for the hops now complete."""
        self.buffer = torch.cat([self.buffer, samples.detach().float().cpu()])
        return self._emit()

    def flush(self) -> torch.Tensor:
        """Codes for the final partial hop (zero-padded); call once at the end of the stream."""
        self.buffer = F.pad(self.buffer, (0, (-len(self.buffer)) % self.codec.hop_length))
        return self._emit()

    @torch.inference_mode()
    def _emit(self) -> torch.Tensor:
        hop = self.codec.hop_length
        complete = (self.buffer_start + len(self.buffer)) // hop  # absolute frames available
        if complete <= self.emitted_frames:
            return torch.zeros(self.k, 0, dtype=torch.long)
        first = self.buffer_start // hop  # absolute frame index of buffer frame 0
        n = complete - first
        device = next(self.codec.model.parameters()).device
        latents = self.codec.model.encode_latents(
            self.buffer[None, : n * hop].to(device), torch.tensor([n], device=device)
        )
        codes = self.codec.model.quantizer(latents, self.k).codes[0, :, self.emitted_frames - first :].cpu()
        self.emitted_frames = complete
        new_start = max(self.buffer_start, (complete - self.codec.context_frames) * hop)
        self.buffer = self.buffer[new_start - self.buffer_start :]
        self.buffer_start = new_start
        return codes


def save_codec(
    model: CodecModel, path: str | Path, name: str = "audiotok", extra: dict | None = None
) -> None:
    """Write ``model.safetensors`` (fp16) and ``config.json`` into ``path`` atomically per file."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {
        k: (v.detach().half() if v.is_floating_point() else v.detach()).contiguous().cpu()
        for k, v in model.state_dict().items()
    }
    tmp = path / "model.safetensors.tmp"
    save_file(state, str(tmp))
    tmp.replace(path / "model.safetensors")
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "name": name, "model": asdict(model.config)}
    meta.update(extra or {})
    tmp = path / "config.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    tmp.replace(path / "config.json")


def default_weights_dir() -> Path:
    """The shipped default codec's folder inside the package."""
    return Path(__file__).resolve().parents[1] / "weights" / "default"
