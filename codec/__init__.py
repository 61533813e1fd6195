"""audiotok.codec: the token API, audio I/O, the RVQ codec and its adapters (the lowest layer).

The public names load on first use, so ``import codec`` stays light::

    from codec import AudioTokens, TokenStore, Vocabulary, load_codec, load_audio

The top-level modules are the API the other packages build on: `codec.tokens` (AudioTokens, the Codec
protocol), `codec.store` (TokenStore), `codec.vocab` (Vocabulary), `codec.registry` (load_codec),
`codec.audio` (load_audio), `codec.pretrained` (EnCodec, DAC and Mimi adapters), `codec.cli` (the
``tokenize``, ``decode`` and ``info`` subcommands). Below them: `codec.nn` (the network), `codec.pipeline`
(the file pipeline of ``tokenize``), `codec.data` (the corpus builder), `codec.train` (training, export).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "AudioTokens": "codec.tokens",
    "Codec": "codec.tokens",
    "TokenStore": "codec.store",
    "StoreError": "codec.store",
    "Vocabulary": "codec.vocab",
    "load_codec": "codec.registry",
    "load_audio": "codec.audio",
    "AudioError": "codec.audio",
}

__all__ = [
    "AudioError",
    "AudioTokens",
    "Codec",
    "StoreError",
    "TokenStore",
    "Vocabulary",
    "load_audio",
    "load_codec",
]

if TYPE_CHECKING:
    from codec.audio import AudioError, load_audio
    from codec.registry import load_codec
    from codec.store import StoreError, TokenStore
    from codec.tokens import AudioTokens, Codec
    from codec.vocab import Vocabulary


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'codec' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_EXPORTS))
