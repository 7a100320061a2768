"""Pretrained configs of every registered model, and the filter that lets timm load a rensenet checkpoint.

``timm.create_model("rensenet_s", pretrained=True, pretrained_cfg_overlay=dict(file="runs/lung/best.pt"))`` reads
the file with timm's own safe loader (``weights_only=True``), which takes the checkpoint's ``state_dict``; then
:func:`checkpoint_filter_fn` adapts it to the model being built, as timm adapts ImageNet weights: a first
convolution of another channel count through ``adapt_input_conv``, classifiers of another class count re-initialised.
"""
from __future__ import annotations

import logging
from typing import Any, Dict

import torch
import torch.nn as nn
from timm.models import adapt_input_conv

log = logging.getLogger(__name__)

#: The three classifiers of a network with an ECM (``head`` predicts; the others serve the training loss).
CLASSIFIERS = ("head.fc", "backbone_head.fc", "ecm_head.fc")


def rensenet_cfg(**kwargs: Any) -> Dict[str, Any]:
    """A pretrained config in timm's format; defaults describe an untrained 1-channel, 2-class model."""
    return {
        "url": "",
        "num_classes": 2,
        "input_size": (1, 64, 64),
        "pool_size": (4, 4),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": (0.5,),
        "std": (0.25,),
        "first_conv": "stem.conv",
        "classifier": CLASSIFIERS,
        "license": "apache-2.0",
        "paper_ids": "doi:10.3390/cancers16030570",
        **kwargs,
    }


def checkpoint_filter_fn(state_dict: Dict[str, torch.Tensor], model: nn.Module) -> Dict[str, torch.Tensor]:
    """A rensenet checkpoint's weights (float16 storage included) adapted to ``model``.

    timm then adapts from the pretrained config as usual; converting here covers a file whose channels or
    classes differ from the config it is loaded under (``pretrained_cfg_overlay=dict(file=...)`` keeps the
    architecture's default config).
    """
    state_dict = {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}
    own = model.state_dict()
    first_conv = model.pretrained_cfg.get("first_conv")
    key = f"{first_conv}.weight"
    if first_conv and key in state_dict and key in own and state_dict[key].shape != own[key].shape:
        base = state_dict[key].shape[1]
        state_dict[key] = adapt_input_conv(own[key].shape[1], state_dict[key], base_chans=base)
        log.info("adapted %s from %d to %d input channels", key, base, own[key].shape[1])
    classifiers = model.pretrained_cfg.get("classifier") or ()
    for name in (classifiers,) if isinstance(classifiers, str) else classifiers:
        for suffix in (".weight", ".bias"):
            k = name + suffix
            if k in state_dict and k in own and state_dict[k].shape != own[k].shape:
                state_dict[k] = own[k]  # another class count: this classifier starts from the model's own init
                log.info("re-initialised %s: the checkpoint has %d classes, the model %d", k,
                         state_dict[k].shape[0], own[k].shape[0])
    return state_dict
