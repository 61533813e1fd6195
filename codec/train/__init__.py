"""Training and export of the audiotok codec (imports torch and accelerate; nothing below imports it).

``accelerate launch -m codec.train --config configs/codec/default.yaml`` trains (`codec.train.loop`);
``python -m codec.train.export RUN --out DIR`` exports a run as a shippable codec folder.
Modules: `config` (TrainConfig, load_config), `batches` (ClipBank: stateless batches and augmentations),
`losses` (reconstruction, phase, envelope and adversarial losses), `stages` (starting from an export,
the stage record), `loop` (the accelerate loop, checkpoints, codebook health), `export`.
"""
