"""Checkpoints that rebuild their own model: architecture, classes, input size and normalisation travel with
the weights, so ``evaluate``, ``predict`` and ``explain`` need only the file."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Tuple, Union

import timm
import torch
import torch.nn as nn

import rensenet.models  # noqa: F401  (registers the RenseNet variants)

from ..io import save_torch

FORMAT = "rensenet-checkpoint-v1"


class CheckpointError(ValueError):
    """A file that is not a usable rensenet checkpoint."""


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


def save_checkpoint(path: Union[str, Path], model: nn.Module, config: Dict[str, Any], **extra: Any) -> Path:
    state = {"format": FORMAT, "config": config, "state_dict": model.state_dict(), **extra}
    return save_torch(path, state)


def load_checkpoint(path: Union[str, Path]) -> Dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found; `rensenet train` writes best.pt and last.pt in --out")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a rensenet checkpoint (written by `rensenet train`)")
    return ckpt


def load_model(path: Union[str, Path], device: Union[str, torch.device] = "cpu") -> Tuple[nn.Module, Dict[str, Any]]:
    """(model in eval mode, its training config) from a checkpoint."""
    ckpt = load_checkpoint(path)
    cfg = ckpt["config"]
    model = create_model(cfg["model"], num_classes=cfg["num_classes"], in_chans=cfg["in_chans"],
                         model_kwargs=cfg.get("model_kwargs"))
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), cfg
