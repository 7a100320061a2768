"""Checkpoints that rebuild their own model, read without running code.

A checkpoint holds tensors and plain values only (dicts, lists, str, int, float, bool, None), so it is read with
``torch.load(weights_only=True)``: a shared file cannot execute anything on the machine that opens it. The
architecture, classes, input size, window and normalisation travel with the weights as a :class:`TrainConfig`.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any, Dict, Tuple, Union

import timm
import torch
import torch.nn as nn

import rensenet.models  # noqa: F401  (registers the RenseNet variants)

from .config import TrainConfig
from .io import save_torch

FORMAT = "rensenet-checkpoint-v1"
_PLAIN = (str, int, float, bool, type(None))


class CheckpointError(ValueError):
    """A file that is not a usable rensenet checkpoint; the message names the file and what to do."""


def create_model(name: str, *, num_classes: int, in_chans: int, model_kwargs: Dict[str, Any] | None = None) -> nn.Module:
    """Any timm model name (RenseNet variants included), never with downloaded weights."""
    try:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans,
                                 **(model_kwargs or {}))
    except RuntimeError as e:
        if "Unknown model" in str(e):
            raise ValueError(f"unknown model {name!r}: use a RenseNet variant ({timm.list_models('rensenet_*')}) "
                             "or any name from timm.list_models()") from None
        raise


def _check_plain(obj: Any, where: str) -> None:
    """Refuse to write anything ``weights_only=True`` could not read back (a numpy scalar, a dataclass, ...)."""
    if isinstance(obj, torch.Tensor) or isinstance(obj, _PLAIN):
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: key {k!r} is a {type(k).__name__}; checkpoints keep str or int keys")
            _check_plain(v, f"{where}[{k!r}]")
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
        return
    raise TypeError(f"{where} is a {type(obj).__name__}; a checkpoint holds only tensors and plain values")


def save_checkpoint(path: Union[str, Path], model: nn.Module, config: TrainConfig | Dict[str, Any],
                    **extra: Any) -> Path:
    """``{"format", "config", "state_dict", **extra}``, checked to be plain, written atomically."""
    cfg = config.to_dict() if isinstance(config, TrainConfig) else dict(config)
    state = {"format": FORMAT, "config": cfg, "state_dict": model.state_dict(), **extra}
    _check_plain(state, "checkpoint")
    return save_torch(path, state)


def load_checkpoint(path: Union[str, Path]) -> Dict[str, Any]:
    """The checkpoint's dict, read with ``weights_only=True``; anything else is refused in one line."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found; `rensenet train` writes best.pt and last.pt in --out")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f" ({found.group(1)})" if found else ""
        raise CheckpointError(
            f"{path}: holds objects other than tensors and plain values{what}, so it was not loaded (unpickling "
            "them could run code on this machine); rensenet checkpoints never hold such objects, so get the file "
            "again from a source you trust") from None
    except Exception as e:  # a truncated file, a zip that is not torch's, ...
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a rensenet checkpoint (written by `rensenet train`)")
    if not isinstance(ckpt.get("config"), dict) or not isinstance(ckpt.get("state_dict"), dict) or \
            not all(isinstance(v, torch.Tensor) for v in ckpt["state_dict"].values()):
        raise CheckpointError(f"{path}: a rensenet checkpoint needs a config and a state_dict of tensors")
    return ckpt


def checkpoint_config(ckpt: Dict[str, Any], path: Union[str, Path]) -> TrainConfig:
    """The typed training config a checkpoint carries (settings of other rensenet versions are ignored)."""
    try:
        return TrainConfig.from_dict(ckpt["config"], strict=False)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: its training config is not usable ({e})") from None


def weights_file(checkpoint: Union[str, Path, None] = None, tag: str | None = None) -> Path:
    """The file to load: a checkpoint, or the verified file of shipped weights (``rensenet_s.kidney_stone_scan``)."""
    if (checkpoint is None) == (tag is None):
        raise ValueError("give a checkpoint file or the name of shipped weights (--checkpoint or --model), one of them")
    if checkpoint is not None:
        return Path(checkpoint)
    from ..models.zoo import resolve_tag

    return resolve_tag(str(tag))


def load_model(path: Union[str, Path], device: Union[str, torch.device] = "cpu") -> Tuple[nn.Module, TrainConfig]:
    """(model in eval mode, its typed training config) from a checkpoint (float16 storage is read as float32)."""
    ckpt = load_checkpoint(path)
    cfg = checkpoint_config(ckpt, path)
    model = create_model(cfg.model, num_classes=int(cfg.num_classes or 2), in_chans=cfg.in_chans,
                         model_kwargs=cfg.model_kwargs)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{path}: its weights do not fit the {cfg.model} its config names ({first})") from None
    return model.to(device).eval(), cfg
