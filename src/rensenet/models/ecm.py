"""Edge Conservative Module: recovers the detail that each 2x2 pooling removes and classifies from it."""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import ConvNormAct
from .transition import avg_pool2x, max_pool2x

UPSAMPLE_MODES = ("bilinear", "nearest")


def pooling_residual(feature_map: torch.Tensor, upsample_mode: str = "bilinear") -> torch.Tensor:
    """``B = |F - up2(avgpool2(F))|``: what 2x2 average pooling throws away, at F's own resolution.

    ``up2`` is bilinear (trilinear for volumes; ``align_corners=False``) or nearest. For an odd size the pooled
    map covers the last row with a 1-pixel window (ceil mode) and ``up2`` is cropped back to F's size, so B is
    aligned with F pixel for pixel at every input size.
    """
    pooled = avg_pool2x(feature_map)
    if upsample_mode == "nearest":
        upsampled = F.interpolate(pooled, scale_factor=2.0, mode="nearest")
    elif upsample_mode == "bilinear":
        mode = "trilinear" if feature_map.dim() == 5 else "bilinear"
        upsampled = F.interpolate(pooled, scale_factor=2.0, mode=mode, align_corners=False)
    else:
        raise ValueError(f"unknown upsample_mode '{upsample_mode}': use 'bilinear' or 'nearest'")
    for dim in range(2, feature_map.dim()):
        upsampled = upsampled.narrow(dim, 0, feature_map.shape[dim])
    return (feature_map - upsampled).abs()


def match_size(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``x`` max-pooled to ``like``'s spatial size: for backbones that floor odd sizes where the ECM's
    ceil-mode pooling rounds up (RenseNet itself always matches, and this is then a no-op)."""
    if x.shape[2:] == like.shape[2:]:
        return x
    if x.dim() == 5:
        return F.adaptive_max_pool3d(x, like.shape[2:])
    return F.adaptive_max_pool2d(x, like.shape[2:])


class CompensationStage(nn.Module):
    """One ECM stage: [concat previous stage + conv1x1 -> BN -> ReLU to ``out_chs``], (conv k x k -> BN -> LeakyReLU) x 2,
    max-pool."""

    def __init__(
        self,
        edge_chs: int,
        out_chs: int,
        *,
        prev_chs: int = 0,
        kernel_size: int = 5,
        spatial_dims: int = 2,
    ) -> None:
        super().__init__()
        self.compress = (
            ConvNormAct(prev_chs + edge_chs, out_chs, 1, spatial_dims=spatial_dims) if prev_chs > 0 else None
        )
        conv1_in = out_chs if self.compress is not None else edge_chs
        self.conv1 = ConvNormAct(conv1_in, out_chs, kernel_size, spatial_dims=spatial_dims, act="leaky_relu")
        self.conv2 = ConvNormAct(out_chs, out_chs, kernel_size, spatial_dims=spatial_dims, act="leaky_relu")
        self.out_chs = out_chs

    def forward(self, edges: torch.Tensor, previous: Optional[torch.Tensor]) -> torch.Tensor:
        x = edges
        if self.compress is not None and previous is not None:
            x = self.compress(torch.cat([match_size(previous, edges), edges], dim=1))
        return max_pool2x(self.conv2(self.conv1(x)))


class EdgeConservativeModule(nn.Module):
    """Compensation path over the pre-pool maps of every transition of a backbone.

    ``forward`` takes the list of pre-pool maps F_1..F_n (highest resolution first, each half the size of the
    one before) and returns a map at the resolution of the backbone after its n-th pooling, with ``out_chs``
    channels. Backbone-agnostic: any network that reports its pre-downsampling maps can use it.
    """

    def __init__(
        self,
        in_chs: Sequence[int],
        *,
        out_chs: Optional[Sequence[int]] = None,
        kernel_size: int = 5,
        upsample_mode: str = "bilinear",
        spatial_dims: int = 2,
    ) -> None:
        super().__init__()
        if not in_chs:
            raise ValueError("the ECM needs at least one pre-pool map (in_chs is empty)")
        if upsample_mode not in UPSAMPLE_MODES:
            raise ValueError(f"unknown upsample_mode {upsample_mode!r}: use one of {UPSAMPLE_MODES}")
        out_chs = list(in_chs) if out_chs is None else list(out_chs)
        if len(out_chs) != len(in_chs):
            raise ValueError(f"out_chs has {len(out_chs)} entries but in_chs has {len(in_chs)}")
        self.upsample_mode = upsample_mode
        self.stages = nn.ModuleList()
        prev = 0
        for edge_chs, stage_out in zip(in_chs, out_chs):
            self.stages.append(
                CompensationStage(
                    edge_chs, stage_out, prev_chs=prev, kernel_size=kernel_size, spatial_dims=spatial_dims
                )
            )
            prev = stage_out
        self.out_chs = out_chs[-1]

    def forward(self, pre_pool_maps: List[torch.Tensor]) -> torch.Tensor:
        if len(pre_pool_maps) != len(self.stages):
            raise ValueError(f"the ECM has {len(self.stages)} stages but got {len(pre_pool_maps)} pre-pool maps")
        out: Optional[torch.Tensor] = None
        for i, stage in enumerate(self.stages):
            out = stage(pooling_residual(pre_pool_maps[i], self.upsample_mode), out)
        assert out is not None
        return out


class FeatureFusion(nn.Module):
    """Concatenates the backbone's and the ECM's final maps; a module of its own so Grad-CAM can target it."""

    def forward(self, backbone: torch.Tensor, ecm: torch.Tensor) -> torch.Tensor:
        if backbone.shape[2:] != ecm.shape[2:]:
            raise ValueError(
                f"backbone map {list(backbone.shape[2:])} and ECM map {list(ecm.shape[2:])} differ in size: "
                "the ECM needs one pre-pool map per backbone downsampling"
            )
        return torch.cat([backbone, ecm], dim=1)
