"""Inference speed-ups that keep the results: BatchNorm folded into the conv before it, channels-last memory."""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .layers import ConvNormAct
from .transition import Transition


def _fold_bn_into_next_conv(norm: nn.modules.batchnorm._BatchNorm, conv: nn.Module) -> nn.Module:
    """BN followed by a 1x1 conv (a transition) as one conv: W' = W * scale, b' = b + W @ shift.

    Exact only for a 1x1 kernel, where no zero padding meets the normalised input.
    """
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    shift = norm.bias - norm.running_mean * scale
    fused = type(conv)(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, bias=True)
    with torch.no_grad():
        w = conv.weight.flatten(2)  # (out, in, 1)
        fused.weight.copy_((w * scale[None, :, None]).view_as(conv.weight))
        bias = (w[..., 0] @ shift) + (conv.bias if conv.bias is not None else 0)
        fused.bias.copy_(bias)
    return fused


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """Fold every ``ConvNormAct``'s BatchNorm into its conv (a transition's into the 1x1 conv after it), in place (layer names stay, so CAM targets still work).

    Only for inference: the folded conv uses the running statistics, so the model must be in eval mode, and it
    cannot be trained or loaded from a checkpoint afterwards (its state dict has no ``norm`` entries).
    """
    if model.training:
        raise ValueError("fuse_conv_bn needs model.eval(): in training BatchNorm uses the batch's statistics")
    for module in model.modules():
        if isinstance(module, ConvNormAct) and isinstance(module.norm, nn.modules.batchnorm._BatchNorm):
            module.conv = fuse_conv_bn_eval(module.conv, module.norm)
            module.norm = nn.Identity()
        elif isinstance(module, Transition) and isinstance(module.norm, nn.modules.batchnorm._BatchNorm) \
                and all(k == 1 for k in module.conv.kernel_size):
            module.conv = _fold_bn_into_next_conv(module.norm, module.conv)
            module.norm = nn.Identity()
    return model


def optimize_for_inference(model: nn.Module, *, fuse: bool = True, channels_last: bool = True) -> nn.Module:
    """``model.eval()``, BN folded, and (2D models) channels-last weights; outputs equal up to float rounding."""
    model.eval()
    if fuse:
        fuse_conv_bn(model)
    if channels_last and any(p.dim() == 4 for p in model.parameters()):
        model.to(memory_format=torch.channels_last)
    return model
