"""The file pipeline of ``audiotok tokenize``: `inputs` (what to read: folders, globs, lists), `reader`
(decode and resample ahead of the encoder, in threads), `streaming` (long files in blocks, the codes of one
pass), `ranks` (multi-process runs sharing one store), `tokenize` (the driver), `hf_datasets` (a store as a
`datasets.Dataset`)."""
