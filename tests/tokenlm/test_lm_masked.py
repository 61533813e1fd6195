"""The masked objective: which frames hide, what they predict, bidirectional attention, training, refusal."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from stores import make_store

from tokenlm.data import TokenData
from tokenlm.masking import mask_frames
from tokenlm.model import IGNORE, LMConfig, TokenLM
from tokenlm.patterns import get_pattern
from tokenlm.train import load_config, train

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "tokenlm" / "tiny.yaml"


def masked_config() -> tuple[LMConfig, object]:
    model_cfg, cfg = load_config(TINY)
    return replace(model_cfg, pattern="parallel", objective="masked"), cfg


def test_masks_hide_whole_frames_of_codes_and_follow_the_generator(tmp_path):
    store = make_store(tmp_path / "store", items=6, frames=200)
    data = TokenData([str(store)], get_pattern("parallel"), 3, 16, holdout_permille=0)
    batch = data.batch(4, 128, seed=0, step=0)
    a = mask_frames(batch, torch.Generator().manual_seed(1), empty=16)
    b = mask_frames(batch, torch.Generator().manual_seed(1), empty=16)
    assert all(torch.equal(a[k], b[k]) for k in a)
    hidden = a["targets"] != IGNORE  # (B, K, L)
    assert torch.equal(hidden, hidden[:, :1].expand_as(hidden))  # a frame hides all K codes at once
    assert torch.all(a["tokens"][hidden] == 16) and torch.equal(a["targets"][hidden], batch["tokens"][hidden])
    assert torch.equal(a["tokens"][~hidden], batch["tokens"][~hidden])
    assert not hidden[batch["books"] < 0].any()  # BOS and padding never hide
    share = hidden[:, 0].sum() / (batch["books"][:, 0] >= 0).sum()
    assert 0.3 < float(share) < 0.7  # p = 0.08, spans of 10: about half


def test_a_masked_lm_attends_both_ways_and_cannot_generate():
    torch.manual_seed(0)
    model_cfg, _ = masked_config()
    masked, causal = (
        TokenLM.build(model_cfg).eval(),
        TokenLM.build(replace(model_cfg, objective="causal")).eval(),
    )
    tokens = torch.randint(0, 16, (1, 3, 12))
    books = torch.arange(3)[None, :, None].expand(1, 3, 12)
    later = tokens.clone()
    later[..., 8] = (later[..., 8] + 1) % 16
    with torch.no_grad():
        for lm, sees_future in ((masked, True), (causal, False)):
            a, b = lm(tokens, books, books), lm(later, books, books)
            assert (not torch.allclose(a[..., 2, :], b[..., 2, :])) == sees_future
            x = lm.embed(tokens, books)
            torch.testing.assert_close(lm.backbone.norm(lm.run_layers(x)),
                                       lm.backbone(inputs_embeds=x, attention_mask=None if sees_future is False
                                                   else torch.ones(1, 1, 12, 12, dtype=torch.bool)).last_hidden_state,
                                       atol=1e-5, rtol=1e-5)  # fmt: skip
    with pytest.raises(ValueError, match="cannot generate"):
        masked.new_cache(1, 8)
    with pytest.raises(ValueError, match="parallel pattern"):
        LMConfig(pattern="delay", objective="masked")


def test_masked_training_learns_and_resumes_exactly(tmp_path):
    store = make_store(tmp_path / "store", items=16, frames=40)
    model_cfg, cfg = masked_config()
    cfg = replace(cfg, steps=80, eval_every=40, log_every=40, ckpt_every=40, lr=1e-2)
    straight = train(model_cfg, cfg, [str(store)], tmp_path / "a", quiet=True)
    rows = [json.loads(line) for line in (tmp_path / "a" / "history.jsonl").read_text().splitlines()]
    assert rows[-1]["eval/masked_codes"] > 0 and rows[-1]["eval/masked_accuracy"] > 1 / 16  # above chance
    assert rows[-1]["eval/masked_loss"] < rows[0]["eval/masked_loss"]
    train(model_cfg, cfg, [str(store)], tmp_path / "b", max_steps=40, quiet=True)
    resumed = train(model_cfg, cfg, [str(store)], tmp_path / "b", quiet=True)
    x, y = load_file(str(straight / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert all(torch.equal(x[k], y[k]) for k in x)
    assert TokenLM.from_pretrained(straight).config.objective == "masked"
