"""Codec training: a tiny run learns, resume equals an uninterrupted run, checkpoints are atomic."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from codec.nn.model import AudiotokCodec
from codec.train.batches import BatchPrefetcher, ClipBank, validation_batch
from codec.train.config import load_config
from codec.train.export import export_discriminator, export_run
from codec.train.loop import CodebookHealth, train
from codec.train.losses import (
    BandEnvelopeLoss,
    MultiResolutionComplexLoss,
    MultiResolutionDiscriminator,
    MultiResolutionMelLoss,
    MultiResolutionPhaseDerivativeLoss,
    MultiResolutionSTFTLoss,
    ReconstructionLoss,
)
from codec.train.stages import initial_discriminator

TINY = Path(__file__).resolve().parents[2] / "configs" / "codec" / "tiny.yaml"


def make_corpus(root: Path) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(9):
        t = np.arange(16000) / 16000
        x = 0.3 * np.sin(2 * np.pi * (150 + 60 * i) * t) + 0.03 * rng.standard_normal(len(t))
        kind = ["speech", "music", "sfx"][i % 3]
        split = "valid" if i >= 6 else "train"
        sf.write(root / f"c{i}.wav", x.astype(np.float32), 16000, subtype="PCM_16")
        rows.append({"path": f"c{i}.wav", "kind": kind, "split": split, "seconds": 1.0})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def tiny_setup(tmp_path: Path, **train_overrides):
    """A tiny corpus under ``tmp_path/corpus`` and the tiny config on it, with ``train_overrides``."""
    (tmp_path / "corpus").mkdir()
    corpus = make_corpus(tmp_path / "corpus")
    model_cfg, cfg = load_config(TINY)
    return corpus, model_cfg, replace(cfg, data_dir=str(corpus), **train_overrides)


def assert_same_weights(export_a: Path, export_b: Path) -> None:
    a, b = AudiotokCodec.from_pretrained(export_a), AudiotokCodec.from_pretrained(export_b)
    for (name, pa), (_, pb) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert torch.equal(pa, pb), name


def trained_start(tmp_path: Path, steps: int):
    """A tiny corpus, the tiny config on it, and a run of ``steps`` steps exported as ``start``."""
    (tmp_path / "corpus").mkdir()
    corpus = make_corpus(tmp_path / "corpus")
    model_cfg, cfg = load_config(TINY)
    cfg = replace(cfg, data_dir=str(corpus), steps=steps, ckpt_every=steps, log_every=1, eval_every=steps)
    return corpus, model_cfg, cfg, train(model_cfg, replace(cfg, out_dir=str(tmp_path / "start")))


def deeper_than(model_cfg):
    return replace(
        model_cfg, encoder_layers=model_cfg.encoder_layers + 1, decoder_layers=model_cfg.decoder_layers + 2
    )


def read_history(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "history.jsonl").read_text().splitlines()]


def test_clip_bank_batches_are_a_pure_function_of_seed_and_step(tmp_path):
    corpus = make_corpus(tmp_path)
    bank = ClipBank(corpus, "train", 16000, {"speech": 1.0, "music": 1.0, "sfx": 1.0})
    a, b = bank.batch(4, 3200, seed=1, step=5), bank.batch(4, 3200, seed=1, step=5)
    assert torch.equal(a, b) and not torch.equal(a, bank.batch(4, 3200, seed=1, step=6))
    assert a.abs().max() <= 1.0


def test_validation_segments_do_not_follow_the_training_seed(tmp_path):
    _, model_cfg, cfg = tiny_setup(tmp_path)
    first = validation_batch(model_cfg, cfg)
    assert torch.equal(first, validation_batch(model_cfg, replace(cfg, seed=cfg.seed + 22)))
    assert not torch.equal(first, validation_batch(model_cfg, replace(cfg, valid_seed=cfg.valid_seed + 1)))


def test_prefetched_batches_are_the_in_process_batches(tmp_path):
    corpus = make_corpus(tmp_path)
    kinds = {"speech": 1.0, "music": 1.0, "sfx": 1.0}
    bank = ClipBank(corpus, "train", 16000, kinds, mix_prob=0.5, radio_prob=0.5)
    prefetch = BatchPrefetcher(bank, 4, 3200, seed=1, rank=0, workers=2)
    try:
        # From a resumed step on, in order, to the last step of the run (nothing queued past it).
        got = [prefetch.batch(step, stop=9) for step in range(3, 9)]
        assert not prefetch.pending
    finally:
        prefetch.close()
    for step, batch in zip(range(3, 9), got):
        assert torch.equal(batch, bank.batch(4, 3200, seed=1, step=step, rank=0)), step


def test_training_with_loader_workers_equals_training_without(tmp_path):
    _, model_cfg, cfg = tiny_setup(tmp_path, steps=4, ckpt_every=4, log_every=2, eval_every=4)
    plain = train(model_cfg, replace(cfg, out_dir=str(tmp_path / "plain")))
    workers = train(model_cfg, replace(cfg, out_dir=str(tmp_path / "workers"), loader_workers=2))
    assert_same_weights(plain, workers)


def test_source_weights_steer_which_clips_are_drawn(tmp_path):
    # Source "pos" holds positive constant clips, "neg" negative ones: the sign of a drawn segment names its source.
    rows = []
    for i, (source, value) in enumerate([("pos", 0.5), ("pos", 0.4), ("neg", -0.5), ("neg", -0.4)]):
        sf.write(tmp_path / f"s{i}.wav", np.full(8000, value, np.float32), 16000, subtype="PCM_16")
        rows.append(
            {"path": f"s{i}.wav", "kind": "speech", "split": "train", "source": source, "seconds": 0.5}
        )
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    kinds = {"speech": 1.0}

    plain = ClipBank(tmp_path, "train", 16000, kinds)
    assert torch.equal(
        plain.batch(64, 1600, seed=0, step=3),
        ClipBank(tmp_path, "train", 16000, kinds, {"pos": 1.0, "neg": 1.0}).batch(64, 1600, seed=0, step=3),
    )
    signs = torch.sign(plain.batch(64, 1600, seed=0, step=3)[:, 0])
    assert (signs > 0).any() and (signs < 0).any()
    only_pos = ClipBank(tmp_path, "train", 16000, kinds, {"neg": 0.0}).batch(64, 1600, seed=0, step=3)
    assert (only_pos[:, 0] > 0).all()
    mostly_neg = ClipBank(tmp_path, "train", 16000, kinds, {"neg": 9.0}).batch(400, 1600, seed=0, step=3)
    assert 0.8 < float((mostly_neg[:, 0] < 0).float().mean()) < 0.98

    with pytest.raises(ValueError, match="no train clips: \\['tuxpaint'\\]"):
        ClipBank(tmp_path, "train", 16000, kinds, {"tuxpaint": 2.0})


def test_resume_equals_uninterrupted(tmp_path):
    _, model_cfg, cfg = tiny_setup(tmp_path, steps=6, ckpt_every=3, log_every=3, eval_every=6)

    straight = train(model_cfg, replace(cfg, out_dir=str(tmp_path / "straight")))
    train(model_cfg, replace(cfg, out_dir=str(tmp_path / "resumed")), max_steps=3)
    assert sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").glob("*.pt")) == ["step-0000003.pt"]
    resumed = train(model_cfg, replace(cfg, out_dir=str(tmp_path / "resumed")))

    assert_same_weights(straight, resumed)
    history = read_history(tmp_path / "resumed")
    assert [h["step"] for h in history] == [3, 6]
    assert "codebook/perplexity_0" in history[-1] and "valid/mel_k4" in history[-1]
    assert not list((tmp_path / "resumed" / "checkpoints").glob("*.tmp"))


@pytest.fixture
def fresh_accelerator_state():
    """accelerate keeps one process-wide state whose mixed precision cannot change once set; a test
    that trains in bf16 after others trained in fp32 starts from (and leaves) a fresh one."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


def test_dropout_odds_and_fp32_discriminators_resume_exactly_under_bf16(tmp_path, fresh_accelerator_state):
    (tmp_path / "corpus").mkdir()
    corpus = make_corpus(tmp_path / "corpus")
    model_cfg, cfg = load_config(TINY)
    K = model_cfg.num_codebooks
    cfg = replace(
        cfg,
        data_dir=str(corpus),
        steps=4,
        ckpt_every=2,
        log_every=2,
        eval_every=4,
        gan_start_step=0,
        disc_windows=[],
        disc_periods=[2, 3],
        disc_fp32=True,
        mixed_precision="bf16",
        quantizer_dropout_weights=[1.0] + [0.0] * (K - 1),  # a dropped item keeps one stage
    )
    straight = train(model_cfg, replace(cfg, out_dir=str(tmp_path / "straight")))
    train(model_cfg, replace(cfg, out_dir=str(tmp_path / "resumed")), max_steps=2)
    resumed = train(model_cfg, replace(cfg, out_dir=str(tmp_path / "resumed")))
    uniform = train(model_cfg, replace(cfg, out_dir=str(tmp_path / "uniform"), quantizer_dropout_weights=[]))
    a, b, c = (AudiotokCodec.from_pretrained(p).model.state_dict() for p in (straight, resumed, uniform))
    assert all(torch.equal(a[name], b[name]) for name in a)  # the odds are back after a resume
    assert not all(torch.equal(a[name], c[name]) for name in a)
    assert all(math.isfinite(h["train/disc"]) for h in read_history(tmp_path / "resumed"))
    with pytest.raises(ValueError, match="quantizer_dropout_weights needs"):
        train(model_cfg, replace(cfg, out_dir=str(tmp_path / "bad"), quantizer_dropout_weights=[1.0]))
    assert not (tmp_path / "bad").exists()  # refused before anything was written


@pytest.mark.parametrize("native", [False, True])
def test_bf16_on_a_cpu_that_emulates_it_warns_and_the_command_line_overrides_it(
    tmp_path, fresh_accelerator_state, monkeypatch, capsys, native
):
    from accelerate.state import AcceleratorState

    from codec.train.loop import main

    corpus, model_cfg, cfg = tiny_setup(tmp_path, steps=2)
    monkeypatch.setattr("codec.train.loop.cpu_has_native_bf16", lambda: native)
    train(model_cfg, replace(cfg, mixed_precision="bf16", out_dir=str(tmp_path / "bf16")), max_steps=0)
    assert ("bf16 is emulated" in capsys.readouterr().out) == (not native)
    config = tmp_path / "bf16.yaml"
    config.write_text(TINY.read_text().replace("train:\n", "train:\n  mixed_precision: bf16\n", 1))
    assert load_config(config)[1].mixed_precision == "bf16"
    AcceleratorState._reset_state(True)  # one precision per process state
    out = tmp_path / "overridden"
    main(
        [
            "--config",
            str(config),
            "--data",
            str(corpus),
            "--out",
            str(out),
            "--max-steps",
            "0",
            "--mixed-precision",
            "no",
        ]
    )
    assert "bf16 is emulated" not in capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["train"]["mixed_precision"] == "no"


def test_discriminator_warmup_leaves_the_generator_as_without_gan(tmp_path):
    (tmp_path / "corpus").mkdir()
    corpus = make_corpus(tmp_path / "corpus")
    model_cfg, cfg = load_config(TINY)
    cfg = replace(
        cfg, data_dir=str(corpus), steps=4, ckpt_every=4, log_every=1, eval_every=4, gan_start_step=0
    )

    plain = train(model_cfg, replace(cfg, out_dir=str(tmp_path / "plain"), gan_start_step=10**9))
    warm = train(model_cfg, replace(cfg, out_dir=str(tmp_path / "warm"), disc_warmup_steps=4))
    period_only = dict(disc_windows=[], disc_periods=[2, 3])  # the CPU-affordable discriminators
    adversarial = train(
        model_cfg, replace(cfg, out_dir=str(tmp_path / "gan"), disc_warmup_steps=2, **period_only)
    )
    a, b, c = (AudiotokCodec.from_pretrained(p).model.state_dict() for p in (plain, warm, adversarial))
    assert all(
        torch.equal(a[name], b[name]) for name in a
    )  # the discriminator learned, the generator did not see it
    assert not all(torch.equal(a[name], c[name]) for name in a)
    warm_logs, gan_logs = read_history(tmp_path / "warm"), read_history(tmp_path / "gan")
    assert all("train/disc" in h and "train/adv" not in h for h in warm_logs)
    assert ["train/adv" in h for h in gan_logs] == [False, False, True, True]
    with pytest.raises(ValueError, match="disc_windows and disc_periods are both empty"):
        train(model_cfg, replace(cfg, out_dir=str(tmp_path / "none"), disc_windows=[], disc_periods=[]))
    assert not (tmp_path / "none").exists()  # refused before anything was written


def test_a_later_adversarial_stage_starts_from_exported_discriminators(tmp_path):
    (tmp_path / "corpus").mkdir()
    corpus = make_corpus(tmp_path / "corpus")
    model_cfg, cfg = load_config(TINY)
    periods = dict(disc_windows=[], disc_periods=[2, 3], gan_start_step=0)
    cfg = replace(cfg, data_dir=str(corpus), steps=2, ckpt_every=2, log_every=1, eval_every=2, **periods)
    train(model_cfg, replace(cfg, out_dir=str(tmp_path / "first")))
    disc_file = export_discriminator(tmp_path / "first", tmp_path / "disc.safetensors")

    # lr_disc 0: the second run's one step must leave exactly the loaded (fp16-rounded) weights.
    train(
        model_cfg,
        replace(cfg, out_dir=str(tmp_path / "second"), steps=1, lr_disc=0.0, init_disc_from=str(disc_file)),
    )
    first = torch.load(tmp_path / "first" / "checkpoints" / "step-0000002.pt", weights_only=True)["disc"]
    second = torch.load(tmp_path / "second" / "checkpoints" / "step-0000001.pt", weights_only=True)["disc"]
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k].half().float(), second[k]) for k in first)
    assert any(not torch.equal(first[k], second[k]) for k in first)  # fp16 on disk: rounded, as documented

    with pytest.raises(ValueError, match="does not fit this run's discriminators"):
        initial_discriminator(disc_file, MultiResolutionDiscriminator((), 4, (2, 3, 5)))


def test_complex_loss_sees_the_phase_that_the_magnitude_loss_does_not():
    torch.manual_seed(0)
    t = torch.arange(16000) / 16000
    x = (0.3 * torch.sin(2 * torch.pi * (200 + 400 * t) * t) + 0.02 * torch.randn(16000))[None]
    complex_loss, stft_loss = MultiResolutionComplexLoss(), MultiResolutionSTFTLoss()
    assert float(complex_loss(x, x)) == 0.0
    # A polarity flip keeps every magnitude: the STFT loss cannot see it, the complex loss sees 4x silence's.
    assert float(stft_loss(-x, x)) < 1e-4
    silence = float(complex_loss(torch.zeros_like(x), x))
    assert abs(float(complex_loss(-x, x)) / silence - 4.0) < 1e-3
    # Silent bins give finite gradients (the compression floor).
    pred = torch.zeros_like(x, requires_grad=True)
    complex_loss(pred, torch.zeros_like(x)).backward()
    assert torch.isfinite(pred.grad).all()


def test_reconstruction_loss_shares_spectra_and_gives_the_same_losses_and_gradients():
    torch.manual_seed(0)
    target = 0.3 * torch.randn(3, 8000)
    mel, stft = MultiResolutionMelLoss(16000), MultiResolutionSTFTLoss()
    pred_a = (target + 0.1 * torch.randn(3, 8000)).requires_grad_(True)
    pred_b = pred_a.detach().clone().requires_grad_(True)
    separate = (mel(pred_a, target), stft(pred_a, target))
    (separate[0] * 15 + separate[1] * 2).backward()
    shared = ReconstructionLoss(mel, stft)(pred_b, target)
    (shared[0] * 15 + shared[1] * 2).backward()
    for a, b in zip(separate, shared):
        assert float(a) > 0.01 and torch.allclose(a, b, rtol=1e-6, atol=0)
    scale = float(pred_a.grad.abs().max())  # summation order differs: equal to float rounding
    assert scale > 0 and torch.allclose(pred_a.grad, pred_b.grad, rtol=1e-5, atol=1e-5 * scale)
    with pytest.raises(ValueError, match="hop = window / 4"):
        odd = MultiResolutionMelLoss(16000)
        odd.mels[0].spectrogram.hop_length = 50
        ReconstructionLoss(odd, stft)


def test_phase_derivative_loss_sees_coherence_but_not_polarity():
    torch.manual_seed(0)
    t = torch.arange(16000) / 16000
    x = (0.3 * torch.sin(2 * torch.pi * (200 + 400 * t) * t) + 0.02 * torch.randn(16000))[None]
    loss = MultiResolutionPhaseDerivativeLoss()
    assert float(loss(x, x)) == 0.0 and float(loss(-x, x)) < 1e-6  # phase steps only: polarity is free
    # Noise with the same magnitudes everywhere would still be incoherent: shuffle the phases.
    spec = torch.stft(x, 512, 128, window=torch.hann_window(512), return_complex=True)
    scrambled = torch.polar(spec.abs(), 2 * torch.pi * torch.rand(spec.shape))
    y = torch.istft(scrambled, 512, 128, window=torch.hann_window(512), length=x.shape[-1])
    assert (
        float(loss(y, x)) > 1.0 > 10 * float(loss(torch.roll(x, 1, -1), x))
    )  # a 1-sample shift costs little
    pred = torch.zeros_like(x, requires_grad=True)
    loss(pred, x).backward()
    assert torch.isfinite(pred.grad).all()


def test_band_envelope_loss_prices_a_gain_and_ignores_what_the_target_leaves_empty():
    torch.manual_seed(0)
    loss = BandEnvelopeLoss(16000)
    x = 0.1 * torch.randn(2, 16000)
    assert float(loss(x, x)) == 0.0
    # A gain g costs 2 |log10 g| (log10 of power) wherever both sides are above the floor: white noise is.
    for g in (0.5, 2.0):
        assert abs(float(loss(g * x, x)) - 2 * abs(math.log10(g))) < 1e-4
    # The target band-limited to 4 kHz: hiss 70 dB down in the empty band costs nothing (below the target's
    # 50 dB range), the same hiss 20 dB down does.
    spec = torch.fft.rfft(x)
    spec[:, 4000:] = 0
    low = torch.fft.irfft(spec, n=16000)
    hiss = torch.fft.rfft(torch.randn(2, 16000))
    hiss[:, :4400] = 0
    hiss = torch.fft.irfft(hiss, n=16000)
    hiss = hiss / hiss.square().mean().sqrt() * low.square().mean().sqrt()
    assert float(loss(low + 10 ** (-70 / 20) * hiss, low)) < 1e-4
    assert float(loss(low + 10 ** (-20 / 20) * hiss, low)) > 0.05
    # Gradients are finite, also for a silent prediction.
    pred = torch.zeros_like(x, requires_grad=True)
    loss(pred, x).backward()
    assert torch.isfinite(pred.grad).all()
    with pytest.raises(ValueError, match="positive frame counts"):
        BandEnvelopeLoss(16000, frames=(0,))


def test_codebook_health_perplexity():
    health = CodebookHealth(2, 8)
    codes = torch.stack([torch.arange(8).repeat(4), torch.zeros(32, dtype=torch.long)])[None]  # (1, 2, 32)
    health.update(codes)
    summary = health.summary()
    assert abs(summary["perplexity"][0] - 8.0) < 1e-6 and summary["perplexity"][1] == 1.0
    assert summary["used"] == [1.0, 0.125]


def test_fine_tune_starts_from_an_export_and_trains_with_period_discriminators(tmp_path):
    _, model_cfg, cfg, start = trained_start(tmp_path, steps=3)

    tuned = replace(
        cfg,
        init_from=str(start),
        gan_start_step=0,
        disc_periods=[2, 3],
        steps=2,
        lambda_complex=1.0,
        lambda_phase=1.0,
        lambda_envelope=1.0,
    )
    untouched = train(model_cfg, replace(tuned, out_dir=str(tmp_path / "zero")), max_steps=0)
    assert (Path(untouched) / "model.safetensors").read_bytes() == (
        Path(start) / "model.safetensors"
    ).read_bytes()

    tuned_export = train(model_cfg, replace(tuned, out_dir=str(tmp_path / "tuned")))
    # The export records both stages (the start's 3 steps, then these 2), and so does codec.train.export.
    shutil.rmtree(start)  # the record must not depend on init_from still being there
    (tmp_path / "exported").mkdir()
    earlier = "# How these weights were made\n\n## Stage 1: CPU\n\nstage-1 facts\n\n## History\n\nkept\n"
    (tmp_path / "exported" / "RECIPE.md").write_text(earlier)
    for folder in (tuned_export, export_run(tmp_path / "tuned", tmp_path / "exported")):
        meta = json.loads((Path(folder) / "config.json").read_text())
        # What loading needs, and a short provenance; the full training config stays in the run folder.
        assert set(meta) == {"format", "format_version", "name", "model", "provenance"}
        provenance = meta["provenance"]
        assert provenance["stages"] == 2 and provenance["trained_steps"] == 5
        assert provenance["stage"]["steps"] == 2 and "CPU" in provenance["stage"]["device"]
        assert len(provenance["corpus_sha256"]) == 64 and provenance["commit"]
    assert json.loads((tmp_path / "tuned" / "config.json").read_text())["train"]["lambda_phase"] == 1.0
    # codec.train.export files the checkpoint it read under its own stage.
    assert provenance["stage"]["checkpoint"] == "step-0000002.pt" and provenance["recipe"] == "RECIPE.md"
    # The export added its stage to the recipe already there, after stage 1 and before the rest.
    recipe = (tmp_path / "exported" / "RECIPE.md").read_text()
    heads = [line for line in recipe.splitlines() if line.startswith("## ")]
    assert heads == ["## Stage 1: CPU", f"## Stage 2: `{tmp_path / 'tuned'}`", "## History"]
    assert "stage-1 facts" in recipe and recipe.endswith("kept\n") and "trained steps: 2 " in recipe
    history = read_history(tmp_path / "tuned")
    assert [h["step"] for h in history] == [1, 2]
    assert all(np.isfinite(h["train/adv"]) and np.isfinite(h["train/fm"]) for h in history)
    assert all(
        np.isfinite(h[f"train/{k}"]) and h[f"train/{k}"] > 0
        for h in history
        for k in ("complex", "phase", "envelope")
    )


def test_fine_tune_refuses_an_export_of_another_shape(tmp_path):
    _, model_cfg, cfg, start = trained_start(tmp_path, steps=1)
    wider = replace(model_cfg, decoder_dim=model_cfg.decoder_dim * 2)
    with pytest.raises(ValueError, match="decoder_dim"):
        train(wider, replace(cfg, init_from=str(start), out_dir=str(tmp_path / "wider")))
    deeper = deeper_than(model_cfg)
    with pytest.raises(ValueError, match="init_grow"):
        train(deeper, replace(cfg, init_from=str(start), out_dir=str(tmp_path / "deeper")))
    with pytest.raises(ValueError, match="decoder_dim"):  # growing adds blocks, nothing else
        train(wider, replace(cfg, init_from=str(start), init_grow=True, out_dir=str(tmp_path / "wider2")))


def test_grown_codec_starts_as_exactly_its_init(tmp_path):
    corpus, model_cfg, cfg, start = trained_start(tmp_path, steps=2)
    deeper = deeper_than(model_cfg)
    grown_cfg = replace(cfg, init_from=str(start), init_grow=True)
    grown = train(deeper, replace(grown_cfg, out_dir=str(tmp_path / "grown")), max_steps=0)
    a, b = AudiotokCodec.from_pretrained(start), AudiotokCodec.from_pretrained(grown)
    assert len(b.model.decoder.blocks) == len(a.model.decoder.blocks) + 2
    x = torch.from_numpy(sf.read(corpus / "c7.wav", dtype="float32")[0])
    tokens = a.encode(x, 16000)
    assert torch.equal(tokens.codes, b.encode(x, 16000).codes)
    assert torch.equal(a.decode(tokens), b.decode(tokens))
    train(deeper, replace(grown_cfg, out_dir=str(tmp_path / "grown")))  # and it trains on from there
    history = read_history(tmp_path / "grown")
    assert [h["step"] for h in history] == [1, 2] and np.isfinite(history[-1]["train/mel"])


def test_codec_with_a_finer_head_starts_from_a_coarse_export_with_its_codes(tmp_path):
    corpus, model_cfg, cfg, start = trained_start(tmp_path, steps=2)
    finer = replace(model_cfg, head_upsample=2)
    with pytest.raises(ValueError, match="init_grow"):
        train(finer, replace(cfg, init_from=str(start), out_dir=str(tmp_path / "refused")))
    fine_cfg = replace(cfg, init_from=str(start), init_grow=True)
    fine = train(finer, replace(fine_cfg, out_dir=str(tmp_path / "fine")), max_steps=0)
    a, b = AudiotokCodec.from_pretrained(start), AudiotokCodec.from_pretrained(fine)
    assert b.model.config.head_upsample == 2 and b.model.head.n_fft == a.model.head.n_fft // 2
    x = torch.from_numpy(sf.read(corpus / "c7.wav", dtype="float32")[0])
    tokens = a.encode(x, 16000)
    assert torch.equal(tokens.codes, b.encode(x, 16000).codes)  # encoder and quantizer untouched
    assert a.decode(tokens).shape == b.decode(tokens).shape
    train(finer, replace(fine_cfg, out_dir=str(tmp_path / "fine")))  # and it trains on from there
    assert [h["step"] for h in read_history(tmp_path / "fine")] == [1, 2]


def test_resume_reads_the_runs_corpus_snapshot_not_the_grown_corpus(tmp_path):
    corpus, model_cfg, cfg = tiny_setup(tmp_path, steps=4, ckpt_every=2, log_every=2, eval_every=4)
    straight = train(model_cfg, replace(cfg, out_dir=str(tmp_path / "straight")))

    run = tmp_path / "resumed"
    train(model_cfg, replace(cfg, out_dir=str(run)), max_steps=2)
    snapshot = json.loads((run / "corpus.json").read_text())
    assert snapshot["train"] == [f"c{i}.wav" for i in range(6)] and snapshot["valid"] == [
        "c6.wav",
        "c7.wav",
        "c8.wav",
    ]
    assert snapshot["hours"]["speech"]["train"] == pytest.approx(2 / 3600, abs=1e-3)
    # A new corpus stage lands between the two parts: loud noise clips in train and valid.
    manifest = corpus / "manifest.jsonl"
    original = manifest.read_text()
    noise = np.random.default_rng(1).uniform(-0.9, 0.9, 16000).astype(np.float32)
    for i, split in enumerate(["train", "train", "valid"]):
        sf.write(corpus / f"new{i}.wav", noise, 16000, subtype="PCM_16")
        with open(manifest, "a") as f:
            f.write(
                json.dumps({"path": f"new{i}.wav", "kind": "speech", "split": split, "seconds": 1.0}) + "\n"
            )
    resumed = train(model_cfg, replace(cfg, out_dir=str(run)))

    assert_same_weights(straight, resumed)
    assert read_history(run)[-1]["valid/mel_k4"] == read_history(tmp_path / "straight")[-1]["valid/mel_k4"]
    # The export's record is the corpus the run read, not the grown one.
    (corpus / "hours.json").write_text(json.dumps({"speech": {"train": 99.0}}))
    exported = export_run(run, tmp_path / "export")
    provenance = json.loads((exported / "config.json").read_text())["provenance"]
    assert provenance["corpus_hours"] == snapshot["hours"]
    assert provenance["corpus_sha256"] == hashlib.sha256((run / "corpus.json").read_bytes()).hexdigest()

    # A clip the run trained on that has left the corpus: one clear error, the checkpoints untouched.
    manifest.write_text("".join(x + "\n" for x in original.splitlines() if "c0.wav" not in x))
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    with pytest.raises(ValueError, match="lacks 1 train clips that this run trained on .*c0.wav"):
        train(model_cfg, replace(cfg, out_dir=str(run), steps=6))
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before


def test_band_limited_segments_lose_their_highs_and_stay_a_pure_function(tmp_path):
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, 32000).astype(np.float32)
    sf.write(tmp_path / "n.wav", noise, 16000, subtype="PCM_16")
    (tmp_path / "manifest.jsonl").write_text(
        json.dumps({"path": "n.wav", "kind": "speech", "split": "train", "seconds": 2.0}) + "\n"
    )
    kinds = {"speech": 1.0}

    def high_share(batch: torch.Tensor) -> torch.Tensor:
        """Per item: the share of energy above 4.2 kHz."""
        power = torch.fft.rfft(batch).abs() ** 2
        return power[:, int(4200 / 8000 * power.shape[1]) :].sum(1) / power.sum(1)

    plain = ClipBank(tmp_path, "train", 16000, kinds)
    off = ClipBank(tmp_path, "train", 16000, kinds, bandlimit_prob=0.0, bandlimit_rates=(8000,))
    assert torch.equal(plain.batch(8, 8000, seed=0, step=2), off.batch(8, 8000, seed=0, step=2))
    assert (high_share(plain.batch(8, 8000, seed=0, step=2)) > 0.4).all()

    always = ClipBank(tmp_path, "train", 16000, kinds, bandlimit_prob=1.0, bandlimit_rates=(8000,))
    assert (high_share(always.batch(8, 8000, seed=0, step=2)) < 0.01).all()
    half = ClipBank(tmp_path, "train", 16000, kinds, bandlimit_prob=0.5, bandlimit_rates=(8000, 11025))
    a = half.batch(200, 1600, seed=0, step=2)
    assert torch.equal(a, half.batch(200, 1600, seed=0, step=2))
    limited = float((high_share(a) < 0.2).float().mean())
    assert 0.35 < limited < 0.65

    for prob, rates in [(1.5, (8000,)), (0.5, (16000,)), (0.5, ())]:
        with pytest.raises(ValueError, match="bandlimit"):
            ClipBank(tmp_path, "train", 16000, kinds, bandlimit_prob=prob, bandlimit_rates=rates)


def test_mixed_segments_carry_the_other_kind_at_the_drawn_ratio(tmp_path):
    """A tone (speech) with noise (sfx) mixed under it: the noise's share of the power matches the drawn
    ratio, a run without mixing keeps its batches, and the batches stay a pure function of the step."""
    rng = np.random.default_rng(0)
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(32000) / 16000)).astype(np.float32)
    sf.write(tmp_path / "t.wav", tone, 16000, subtype="PCM_16")
    sf.write(tmp_path / "n.wav", rng.uniform(-0.5, 0.5, 32000).astype(np.float32), 16000, subtype="PCM_16")
    rows = [
        {"path": "t.wav", "kind": "speech", "split": "train", "seconds": 2.0},
        {"path": "n.wav", "kind": "sfx", "split": "train", "seconds": 2.0},
    ]
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    kinds = {"speech": 0.999, "sfx": 0.001}  # almost only tones drawn first

    def noise_share(batch: torch.Tensor) -> torch.Tensor:
        """Per item: the share of power away from the tone's bin."""
        power = torch.fft.rfft(batch).abs() ** 2
        b = round(440 / 8000 * (power.shape[1] - 1))
        return 1 - power[:, b - 3 : b + 4].sum(1) / power.sum(1)

    plain = ClipBank(tmp_path, "train", 16000, kinds)
    off = ClipBank(tmp_path, "train", 16000, kinds, mix_prob=0.0, radio_prob=0.0)
    assert torch.equal(plain.batch(8, 8000, seed=0, step=3), off.batch(8, 8000, seed=0, step=3))
    assert (noise_share(plain.batch(8, 8000, seed=0, step=3)) < 0.01).all()

    at_10db = ClipBank(tmp_path, "train", 16000, kinds, mix_prob=1.0, mix_snr_db=(10.0, 10.0))
    share = noise_share(at_10db.batch(8, 8000, seed=0, step=3))
    assert torch.allclose(share, torch.full_like(share, 1 / 11), atol=0.01)  # 10 dB: noise is 1/11 of it
    half = ClipBank(tmp_path, "train", 16000, kinds, mix_prob=0.5, mix_snr_db=(0.0, 20.0))
    a = half.batch(200, 1600, seed=0, step=3)
    assert torch.equal(a, half.batch(200, 1600, seed=0, step=3))
    assert 0.35 < float((noise_share(a) > 0.005).float().mean()) < 0.65

    for prob, snr, radio in [
        (1.5, (0, 20), 0.0),
        (0.5, (20, 0), 0.0),
        (0.5, (0, 20, 30), 0.0),
        (0, (0, 20), -1),
    ]:
        with pytest.raises(ValueError, match="mix_prob|mix_snr_db|radio_prob"):
            ClipBank(tmp_path, "train", 16000, kinds, mix_prob=prob, mix_snr_db=snr, radio_prob=radio)


def test_radio_voice_keeps_the_telephone_band_and_clips():
    from codec.train.batches import radio_voice

    t = np.arange(16000) / 16000
    low, mid, high = (np.sin(2 * np.pi * f * t).astype(np.float32) for f in (100, 1000, 6000))
    gains = [
        float(np.sqrt(np.mean(radio_voice(x, 16000, drive=1.0)[4000:] ** 2) / np.mean(x[4000:] ** 2)))
        for x in (low, mid, high)
    ]
    assert gains[1] > 0.9 and gains[0] < 0.05 and gains[2] < 0.03  # 6 kHz: -40 dB and more
    clipped = radio_voice(0.5 * mid, 16000, drive=8.0)
    peak = np.abs(clipped).max()  # the band-passed peak (the filter's onset overshoots 0.5 a little)
    assert peak < 0.6 and np.mean(np.abs(clipped[4000:]) > 0.85 * peak) > 0.5  # squared off
    assert np.mean(np.abs(0.5 * mid[4000:]) > 0.85 * 0.5) < 0.4  # (a sine is not)


def test_radio_voice_pass_band_follows_its_edges():
    from codec.train.batches import radio_voice

    t = np.arange(16000) / 16000

    def gain(f: float, low: float, high: float) -> float:
        x = np.sin(2 * np.pi * f * t).astype(np.float32)
        y = radio_voice(x, 16000, drive=1.0, low_hz=low, high_hz=high)
        return float(np.sqrt(np.mean(y[4000:] ** 2) / np.mean(x[4000:] ** 2)))

    assert gain(500, 300, 3400) > 0.9 and gain(500, 1200, 5000) < 0.05  # a radio that cuts the lows
    assert gain(4500, 300, 3400) < 0.25 and gain(4500, 1200, 5000) > 0.9  # ... and keeps more highs


def test_radio_band_ranges_are_drawn_per_segment_and_checked(tmp_path):
    corpus = make_corpus(tmp_path)
    kinds = {"speech": 1.0, "music": 1.0, "sfx": 1.0}
    fixed = ClipBank(corpus, "train", 16000, kinds, radio_prob=1.0)
    explicit = ClipBank(
        corpus, "train", 16000, kinds, radio_prob=1.0, radio_low_hz=(300, 300), radio_high_hz=(3400, 3400)
    )
    drawn = ClipBank(
        corpus, "train", 16000, kinds, radio_prob=1.0, radio_low_hz=(200, 1200), radio_high_hz=(2800, 5000)
    )
    # A fixed band draws nothing from the batch's generator: the telephone-band runs keep their batches.
    a = fixed.batch(6, 3200, seed=1, step=4)
    assert torch.equal(a, explicit.batch(6, 3200, seed=1, step=4))
    b = drawn.batch(6, 3200, seed=1, step=4)
    assert torch.equal(b, drawn.batch(6, 3200, seed=1, step=4)) and not torch.equal(a, b)
    for low, high in [
        ((300, 200), (3400, 3400)),
        ((300, 300), (3400, 9000)),
        ((0, 300), (3400, 3400)),
        ((300, 3500), (3400, 4000)),
        ((300,), (3400, 3400)),
    ]:
        with pytest.raises(ValueError, match="radio_low_hz|radio_high_hz"):
            ClipBank(corpus, "train", 16000, kinds, radio_prob=1.0, radio_low_hz=low, radio_high_hz=high)


def test_exports_of_the_old_format_still_count_their_stages(tmp_path):
    """Exports and run folders made before ``provenance`` listed every stage in full; a fine-tune from
    one still counts them."""
    from codec.train.stages import LINEAGE, prior_provenance, stage_record

    (tmp_path / "old").mkdir()
    stages = [{"steps": 3, "device": "cpu", "train": {}}, {"steps": 4, "device": "cpu", "train": {}}]
    (tmp_path / "old" / "config.json").write_text(
        json.dumps({"model": {}, "trained_steps": 7, "stages": stages})
    )
    assert prior_provenance(tmp_path / "old") == {"stages": 2, "trained_steps": 7}
    (tmp_path / "single").mkdir()
    (tmp_path / "single" / "config.json").write_text(json.dumps({"model": {}, "trained_steps": 9}))
    assert prior_provenance(tmp_path / "single") == {"stages": 1, "trained_steps": 9}
    run = tmp_path / "run"
    run.mkdir()
    (run / LINEAGE).write_text(json.dumps(stages))  # a run started before the change, resumed after it
    record = stage_record(run, 5, "cpu")["provenance"]
    assert (record["stages"], record["trained_steps"], record["stage"]["steps"]) == (3, 12, 5)
