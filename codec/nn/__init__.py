"""The audiotok codec network: `model` (STFT encoder, factorized RVQ, Vocos-style iSTFT decoder; the
`AudiotokCodec` wrapper that implements the token API) and `quantize` (the residual vector quantizer)."""
