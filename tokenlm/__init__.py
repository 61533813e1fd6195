"""audiotok.tokenlm: language models over codec tokens (imports codec; nothing heavy here).

`tokenlm.patterns` (flatten, coarse-first, delay, parallel), `tokenlm.model` (TokenLM on a transformers
Llama backbone), `tokenlm.data` (packed batches from token stores), `tokenlm.train` (accelerate
pretraining: ``accelerate launch -m tokenlm.train --config ...``), `tokenlm.generate` (continuations
with a preallocated KV cache), `tokenlm.compress` (lossless token compression with a range coder),
`tokenlm.cli` (``audiotok lm ...``).
"""
