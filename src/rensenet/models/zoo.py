"""The weights shipped in the package, as timm pretrained tags: ``timm.create_model("rensenet_s.kidney_stone_scan",
pretrained=True)`` loads them offline, from the package itself (nothing is ever downloaded).

``weights/zoo.json`` lists them, each made by one command of ``benchmarks/train_zoo.py``, with its sha256 and
model card (``docs/models/<tag>.md``). A weight file is a rensenet checkpoint in float16 (``rensenet.base``
reads it, with the normalisation, CT window, training scale and class names of its run).
"""
from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List

from .pretrained import rensenet_cfg


def weights_dir() -> Path:
    return Path(str(resources.files("rensenet") / "weights"))


def zoo_entries() -> List[Dict[str, Any]]:
    """The shipped weights, as ``benchmarks/train_zoo.py`` recorded them (empty before it ran)."""
    path = weights_dir() / "zoo.json"
    return json.loads(path.read_text()) if path.exists() else []


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pretrained_cfgs(architecture: str) -> Dict[str, Dict[str, Any]]:
    """``{"<architecture>.<tag>": cfg}`` of the shipped weights of one architecture, for ``generate_default_cfgs``."""
    out = {}
    for e in zoo_entries():
        if e["architecture"] == architecture:
            out[f"{architecture}.{e['tag']}"] = rensenet_cfg(
                file=str(weights_dir() / e["file"]), num_classes=e["num_classes"], input_size=tuple(e["input_size"]),
                pool_size=tuple(e["pool_size"]), mean=tuple(e["mean"]), std=tuple(e["std"]),
                label_names=tuple(e["label_names"]), description=e["description"], license=e["license"],
                origin_url=e["card"], notes=(f"sha256:{e['sha256']}", e["command"]))
    return out


def resolve_tag(name: str) -> Path:
    """The verified weight file of a shipped tag (``rensenet_s.kidney_stone_scan``); an unknown name lists the
    known ones, and a file whose sha256 differs from the one recorded is refused."""
    entries = {f"{e['architecture']}.{e['tag']}": e for e in zoo_entries()}
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none (run benchmarks/train_zoo.py)"
        raise ValueError(f"unknown pretrained weights {name!r}; the package ships: {known}")
    entry = entries[name]
    path = weights_dir() / entry["file"]
    if not path.is_file():
        raise ValueError(f"{path}: the weights of {name} are missing from this installation; reinstall rensenet")
    if sha256(path) != entry["sha256"]:
        raise ValueError(f"{path}: its sha256 is not the one recorded for {name} (the file changed); reinstall "
                         "rensenet")
    return path
