"""audiotok.multimodal: the audio-language model (captions, answers, retrieval) over the token LM.

    from multimodal import AudioLanguageModel
    alm = AudioLanguageModel.from_pretrained("default")
    alm.caption("clip.wav"); alm.ask("clip.wav", "Is there speech?"); alm.retrieve("clip.wav", texts)

Modules: `multimodal.api` (AudioLanguageModel), `multimodal.model` (the network and its connectors),
`multimodal.encoder` (the token LM as audio encoder), `multimodal.data` (the paired set and its feature
cache), `multimodal.text` (the text side of the unified vocabulary), `multimodal.train` (accelerate
training), `multimodal.scenes` (the paired-set builder), `multimodal.cli` (``audiotok caption``, ``ask``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {"AudioLanguageModel": "multimodal.api", "ALMConfig": "multimodal.model"}

__all__ = ["ALMConfig", "AudioLanguageModel"]

if TYPE_CHECKING:
    from multimodal.api import AudioLanguageModel
    from multimodal.model import ALMConfig


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'multimodal' has no attribute {name!r}")
