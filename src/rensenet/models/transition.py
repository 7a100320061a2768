"""Transition between stages, returning the pre-pool map so the ECM can see what pooling removes."""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import batch_norm, conv


def avg_pool2x(x: torch.Tensor) -> torch.Tensor:
    """2x average pooling over all spatial dims; an odd edge is averaged over the pixels it has (ceil mode)."""
    if x.dim() == 5:
        return F.avg_pool3d(x, 2, ceil_mode=True)
    return F.avg_pool2d(x, 2, ceil_mode=True)


def max_pool2x(x: torch.Tensor) -> torch.Tensor:
    """2x max pooling with the same output size as :func:`avg_pool2x` (ceil mode)."""
    if x.dim() == 5:
        return F.max_pool3d(x, 2, ceil_mode=True)
    return F.max_pool2d(x, 2, ceil_mode=True)


class Transition(nn.Module):
    """BN -> conv1x1 (channels x compression) -> 2x2 average pooling.

    ``forward`` returns ``(pooled, pre_pool)``: the pre-pool map F is an output, not module state, so the
    module is re-entrant and safe under DataParallel, checkpointing and scripting.
    """

    def __init__(self, in_chs: int, out_chs: int, *, spatial_dims: int = 2) -> None:
        super().__init__()
        self.norm = batch_norm(spatial_dims, in_chs)
        self.conv = conv(spatial_dims, in_chs, out_chs, 1)
        self.out_chs = out_chs

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        pre_pool = self.conv(self.norm(x))
        return avg_pool2x(pre_pool), pre_pool
