"""Token LMs: the incremental (KV-cache) path equals the full forward pass, packing equals separate items,
save/load round trips through the transformers Auto classes, every config under configs/tokenlm builds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tokenlm.data import attention_mask, item_cells
from tokenlm.model import LMConfig, TokenLM
from tokenlm.patterns import PATTERNS
from tokenlm.train import load_config

ROOT = Path(__file__).resolve().parents[2]


def tiny_lm(pattern: str, seed: int = 0) -> TokenLM:
    torch.manual_seed(seed)
    cfg = LMConfig(pattern=pattern, num_codebooks=3, codebook_size=16, hidden_size=32, num_layers=2,
                   num_heads=4, num_kv_heads=2, intermediate_size=64, max_steps=128)  # fmt: skip
    return TokenLM.build(cfg, {"codec_id": "tiny-16k@000000000000", "frame_rate": 50.0}).eval()


@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_kv_cache_logits_equal_the_full_forward(pattern):
    lm = tiny_lm(pattern)
    codes = torch.randint(0, 16, (2, 3, 7), generator=torch.Generator().manual_seed(1))
    cells = [item_cells(lm.pattern, c, 16) for c in codes]
    tokens, books, target_books = (
        torch.stack([getattr(c, k) for c in cells]) for k in ("tokens", "books", "target_books")
    )
    full = lm(tokens, books, target_books)  # (B, Q, L, N)
    cache = lm.new_cache(2, tokens.shape[-1])
    prefill = 5
    pieces = [lm.step(tokens[..., :prefill], books[..., :prefill], target_books[..., :prefill], cache, 0)]
    for i in range(prefill, tokens.shape[-1]):
        pieces.append(
            lm.step(tokens[..., i : i + 1], books[..., i : i + 1], target_books[..., i : i + 1], cache, i)
        )
    torch.testing.assert_close(torch.cat(pieces, dim=2), full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pattern", ["flatten", "delay"])
def test_packed_items_equal_items_alone(pattern):
    lm = tiny_lm(pattern)
    a = item_cells(lm.pattern, torch.randint(0, 16, (3, 6)), 16)
    b = item_cells(lm.pattern, torch.randint(0, 16, (3, 4)), 16)
    packed = {
        k: torch.cat([getattr(a, k), getattr(b, k)], dim=1)[None] for k in ("tokens", "books", "target_books")
    }
    doc = torch.cat([torch.zeros(a.length), torch.ones(b.length)]).long()[None]
    positions = torch.cat([torch.arange(a.length), torch.arange(b.length)])[None]
    out = lm(**packed, position_ids=positions, attention_mask=attention_mask(doc))
    torch.testing.assert_close(out[:, :, : a.length], lm(a.tokens[None], a.books[None], a.target_books[None]))
    torch.testing.assert_close(out[:, :, a.length :], lm(b.tokens[None], b.books[None], b.target_books[None]))


@pytest.mark.parametrize("pattern", ["flatten", "delay"])
def test_save_and_load_through_the_auto_classes(tmp_path, pattern):
    from transformers import AutoModel, AutoModelForCausalLM

    lm = tiny_lm(pattern)
    cells = item_cells(lm.pattern, torch.randint(0, 16, (3, 5)), 16)
    before = lm(cells.tokens[None], cells.books[None], cells.target_books[None])
    lm.save_pretrained(tmp_path / "lm")
    again = TokenLM.from_pretrained(tmp_path / "lm")
    assert again.meta["codec_id"] == "tiny-16k@000000000000" and again.config == lm.config
    torch.testing.assert_close(again(cells.tokens[None], cells.books[None], cells.target_books[None]), before)
    if pattern == "flatten":  # a plain Llama: any tool that reads Llama loads it
        hf = AutoModelForCausalLM.from_pretrained(tmp_path / "lm")
        assert type(hf).__name__ == "LlamaForCausalLM" and hf.config.vocab_size == len(lm.vocab)
    else:
        assert type(AutoModel.from_pretrained(tmp_path / "lm")).__name__ == "MultiStreamLM"


def test_not_a_model_folder_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="not a token LM folder"):
        TokenLM.from_pretrained(tmp_path)


def test_bad_config_is_one_clear_error():
    with pytest.raises(ValueError, match="unknown pattern"):
        LMConfig(pattern="spiral")
    with pytest.raises(ValueError, match="unknown keys"):
        LMConfig.from_dict({"hidden": 3})


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "tokenlm").glob("*.yaml")), ids=lambda p: p.name)
def test_every_tokenlm_config_builds(path):
    model_cfg, train_cfg = load_config(path)
    with torch.device("meta"):  # the large ones too, without allocating their weights
        lm = TokenLM.build(model_cfg)
    assert lm.num_parameters() > 0 and train_cfg.steps > 0 and train_cfg.seq_steps <= model_cfg.max_steps


@pytest.mark.parametrize(
    "path", sorted((ROOT / "configs" / "accelerate").glob("*.yaml")), ids=lambda p: p.name
)
def test_every_accelerate_config_loads(path):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(path))
    assert config.num_processes >= 2 and config.distributed_type is not None


@pytest.mark.parametrize("pattern", ["delay", "parallel"])
def test_depth_head_decides_cells_in_turn_equal_to_the_full_forward(pattern):
    """With a depth head, step_hidden + decide (each cell after the ones before it) gives the logits of
    the teacher-forced full forward pass."""
    torch.manual_seed(0)
    cfg = LMConfig(pattern=pattern, num_codebooks=3, codebook_size=16, hidden_size=32, num_layers=2, num_heads=4,
                   num_kv_heads=2, intermediate_size=64, max_steps=128, depth_layers=2, depth_hidden=32)  # fmt: skip
    lm = TokenLM.build(cfg).eval()
    cells = item_cells(
        lm.pattern, torch.randint(0, 16, (3, 6), generator=torch.Generator().manual_seed(2)), 16
    )
    full = lm(cells.tokens[None], cells.books[None], cells.target_books[None], targets=cells.targets[None])
    cache = lm.new_cache(1, cells.length)
    for p in range(cells.length):
        hidden = lm.step_hidden(cells.tokens[None, :, p : p + 1], cells.books[None, :, p : p + 1], cache, p)
        seen = []

        def choose(streams, logits, p=p, seen=seen):
            seen.append(logits)
            return cells.targets[None, streams, p].clamp(min=0)  # teacher forcing, as in training

        lm.decide(hidden[:, -1], cells.target_books[None, :, p], choose)
        torch.testing.assert_close(torch.cat(seen, dim=1), full[:, :, p], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="depth head needs a K-stream pattern"):
        LMConfig(pattern="flatten", depth_layers=1)
