"""One entry point that turns a codec name or path into a `Codec` (codec/tokens.py).

`load_codec(name_or_path)` accepts, in this order:

1. ``None`` or ``"default"``: the codec shipped in the repo, ``codec/weights/default``.
2. a bare name of another folder in ``codec/weights/`` (what `list_codecs` returns).
3. a local folder whose ``config.json`` has ``"format": "audiotok-codec"``: our codec
   (``codec.nn.model.AudiotokCodec``, imported only then, so the adapters work without it).
4. a local folder written by HF ``save_pretrained`` whose ``model_type`` is encodec, dac or mimi: the
   pretrained adapters of codec/pretrained.py.
5. a hub id such as ``"facebook/encodec_24khz"``: the adapters again, through ``from_pretrained``; this is
   the only form that may use the network (tests never do).

Anything else is a `ValueError` that names the input and lists these forms.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from codec.tokens import Codec

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_CODEC = "default"
AUDIOTOK_FORMAT = "audiotok-codec"
HF_MODEL_TYPES = ("encodec", "dac", "mimi")

# "org/name" as the hub spells repo ids; a bare word is never taken for a hub id
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

ACCEPTED_FORMS = (
    "None or 'default' (the shipped codec), the name of a folder in codec/weights/, "
    "a folder with config.json of format 'audiotok-codec', "
    f"a save_pretrained folder with model_type in {', '.join(HF_MODEL_TYPES)}, "
    "or a hub id like 'facebook/encodec_24khz'"
)


def load_codec(name_or_path: str | Path | None = None, device: str = "cpu") -> Codec:
    """Load a codec by name, folder or hub id (see the module docstring) onto ``device``."""
    if name_or_path is None:
        name_or_path = DEFAULT_CODEC
    text = str(name_or_path)
    shipped = WEIGHTS_DIR / text
    if "/" not in text and "\\" not in text and text not in (".", "..") and shipped.is_dir():
        return _load_folder(shipped, device)
    if text == DEFAULT_CODEC:
        raise ValueError(
            f"the default codec is missing: {shipped} does not exist; reinstall audiotok or pass a codec folder."
        )
    path = Path(text).expanduser()
    if path.is_dir():
        return _load_folder(path, device)
    if path.exists():
        raise ValueError(
            f"{path} is a file; pass the folder that holds config.json. Accepted: {ACCEPTED_FORMS}."
        )
    if _HUB_ID.match(text):
        from codec.pretrained import HFCodec

        try:
            return HFCodec.from_pretrained(text, device=device)
        except OSError as err:
            raise ValueError(
                f"could not load hub id {text!r} ({err}); without a network, save the model with "
                "save_pretrained and pass that folder."
            ) from err
    raise ValueError(f"unknown codec {text!r}: no such folder or hub id. Accepted: {ACCEPTED_FORMS}.")


def codec_kind(path: str | Path) -> str | None:
    """``"audiotok-codec"``, ``"encodec"``, ``"dac"`` or ``"mimi"`` for a loadable folder, else None."""
    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        return None
    try:
        config = json.loads(config_file.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(config, dict):
        return None
    if config.get("format") == AUDIOTOK_FORMAT:
        return AUDIOTOK_FORMAT
    if config.get("model_type") in HF_MODEL_TYPES:
        return config["model_type"]
    return None


def list_codecs(search_dirs: list[str | Path] | tuple[str | Path, ...] = ()) -> list[str]:
    """Names that `load_codec` resolves offline: ``"default"`` first (when shipped), the other folders of
    codec/weights/ by name, then every loadable subfolder of ``search_dirs`` (or a ``search_dirs`` entry
    that is itself loadable) as a path. Hub ids are not listed: they need the network."""
    names: list[str] = []
    if WEIGHTS_DIR.is_dir():
        shipped = sorted(p.name for p in WEIGHTS_DIR.iterdir() if p.is_dir() and codec_kind(p) is not None)
        names += [n for n in shipped if n == DEFAULT_CODEC] + [n for n in shipped if n != DEFAULT_CODEC]
    for root in map(Path, search_dirs):
        if codec_kind(root) is not None:
            names.append(str(root))
        elif root.is_dir():
            names += [str(p) for p in sorted(root.iterdir()) if p.is_dir() and codec_kind(p) is not None]
    return names


def _load_folder(path: Path, device: str) -> Codec:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ValueError(f"{path} has no config.json; pass a codec folder. Accepted: {ACCEPTED_FORMS}.")
    try:
        config = json.loads(config_file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{config_file} is not valid JSON ({err}); re-save the codec.") from err
    if not isinstance(config, dict):
        raise ValueError(f"{config_file} is not a JSON object; re-save the codec.")
    if config.get("format") == AUDIOTOK_FORMAT:
        from codec.nn.model import AudiotokCodec  # lazy: the adapters must not need our model code

        return AudiotokCodec.from_pretrained(path, device=device)
    if config.get("model_type") in HF_MODEL_TYPES:
        from codec.pretrained import HFCodec

        return HFCodec.from_pretrained(path, device=device)
    found = config.get("format") or config.get("model_type")
    raise ValueError(
        f"{config_file} describes {found!r}, which is not a codec audiotok can load. Accepted: {ACCEPTED_FORMS}."
    )
