"""audiotok.codec: audio I/O, the RVQ codec, pretrained-codec adapters and the token API.

Nothing heavy is imported here; import the submodules you need:
``codec.tokens`` (AudioTokens, Codec protocol), ``codec.store`` (TokenStore), ``codec.vocab``
(Vocabulary), ``codec.audio`` (loading and validation), ``codec.registry`` (load_codec).
"""

__all__ = ["tokens", "store", "vocab", "audio", "registry"]
