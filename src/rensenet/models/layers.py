"""Dimension-agnostic convolution helpers, so one block definition serves 2D slices and 3D volumes."""
from __future__ import annotations

import math
from typing import Optional, Type

import torch.nn as nn


def _by_dims(spatial_dims: int, two_d: Type[nn.Module], three_d: Type[nn.Module]) -> Type[nn.Module]:
    if spatial_dims == 2:
        return two_d
    if spatial_dims == 3:
        return three_d
    raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")


def conv(spatial_dims: int, in_chs: int, out_chs: int, kernel_size: int, *, stride: int = 1) -> nn.Module:
    """A bias-free 'same'-padded convolution (a norm layer always follows)."""
    cls = _by_dims(spatial_dims, nn.Conv2d, nn.Conv3d)
    return cls(in_chs, out_chs, kernel_size, stride=stride, padding=kernel_size // 2, bias=False)


NORMS = ("batch", "group")


def batch_norm(spatial_dims: int, num_features: int) -> nn.Module:
    return _by_dims(spatial_dims, nn.BatchNorm2d, nn.BatchNorm3d)(num_features)


def replace_batch_norm(module: nn.Module, norm: str) -> nn.Module:
    """Swap every BatchNorm for ``norm``: ``"group"`` is GroupNorm with up to 8 groups, independent of the batch
    (tiny 3D batches; distributed runs that must equal a single-process run exactly)."""
    if norm not in NORMS:
        raise ValueError(f"unknown norm '{norm}': use one of {NORMS}")
    if norm == "batch":
        return module
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, nn.GroupNorm(math.gcd(child.num_features, 8), child.num_features))
        else:
            replace_batch_norm(child, norm)
    return module


POOL_TYPES = ("avg", "max", "")


def global_pool(spatial_dims: int, pool_type: str = "avg") -> nn.Module:
    """Global pooling as timm names it: ``"avg"``, ``"max"``, or ``""`` (none: the map passes through)."""
    if pool_type not in POOL_TYPES:
        raise ValueError(f"unknown global_pool {pool_type!r}: use one of {POOL_TYPES}")
    if pool_type == "":
        return nn.Identity()
    if pool_type == "max":
        return _by_dims(spatial_dims, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)(1)
    return _by_dims(spatial_dims, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)(1)


class ConvNormAct(nn.Sequential):
    """conv -> norm (BN) -> activation (ReLU by default, LeakyReLU in the ECM, none when act is None)."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int,
        *,
        stride: int = 1,
        spatial_dims: int = 2,
        act: Optional[str] = "relu",
    ) -> None:
        super().__init__()
        self.conv = conv(spatial_dims, in_chs, out_chs, kernel_size, stride=stride)
        self.norm = batch_norm(spatial_dims, out_chs)
        if act == "relu":
            self.act = nn.ReLU(inplace=True)
        elif act == "leaky_relu":
            self.act = nn.LeakyReLU(0.01, inplace=True)
        elif act is None:
            self.act = nn.Identity()
        else:
            raise ValueError(f"unknown activation {act!r}: use 'relu', 'leaky_relu' or None")
