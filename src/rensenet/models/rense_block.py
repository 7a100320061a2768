"""Rense block: the residual and dense skip connections of one stage, in the variants the ablation compares."""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn

from .layers import ConvNormAct

BlockVariant = Literal["dense_residual", "residual_dense", "dense"]
BLOCK_VARIANTS = ("dense_residual", "residual_dense", "dense")


class DenseLayer(ConvNormAct):
    """conv3x3 (C -> k) -> BN -> ReLU: the k new channels one dense layer adds."""

    def __init__(self, in_chs: int, growth_rate: int, *, spatial_dims: int = 2) -> None:
        super().__init__(in_chs, growth_rate, 3, spatial_dims=spatial_dims)


class ResidualUnit(nn.Module):
    """conv3x3 -> BN -> ReLU -> conv3x3 -> BN, plus a conv1x1 -> BN shortcut, added, ReLU; C -> k channels."""

    def __init__(self, in_chs: int, growth_rate: int, *, spatial_dims: int = 2) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(in_chs, growth_rate, 3, spatial_dims=spatial_dims)
        self.conv2 = ConvNormAct(growth_rate, growth_rate, 3, spatial_dims=spatial_dims, act=None)
        self.shortcut = ConvNormAct(in_chs, growth_rate, 1, spatial_dims=spatial_dims, act=None)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class RenseBlock(nn.Module):
    """A stage of ``num_layers`` layers whose outputs are concatenated (C -> C + L*k channels).

    Variants (the Rense block is the join of residual addition and dense concatenation):

    - ``"dense_residual"`` (default, the published design): dense layers inside; the block input also goes
      through a projection ``conv1x1 -> BN -> ReLU`` to C + L*k channels that is *added* to the dense output,
      then ReLU.
    - ``"residual_dense"``: each layer is a :class:`ResidualUnit` whose k-channel output is concatenated.
    - ``"dense"``: plain dense layers, no residual shortcut (the ablation baseline).
    """

    def __init__(
        self,
        in_chs: int,
        *,
        num_layers: int,
        growth_rate: int,
        variant: BlockVariant = "dense_residual",
        spatial_dims: int = 2,
    ) -> None:
        super().__init__()
        if variant not in BLOCK_VARIANTS:
            raise ValueError(f"unknown Rense block variant {variant!r}: choose one of {BLOCK_VARIANTS}")
        if num_layers < 1 or growth_rate < 1:
            raise ValueError(f"num_layers and growth_rate must be >= 1, got {num_layers} and {growth_rate}")
        layer_cls = ResidualUnit if variant == "residual_dense" else DenseLayer
        self.layers = nn.ModuleList(
            layer_cls(in_chs + i * growth_rate, growth_rate, spatial_dims=spatial_dims) for i in range(num_layers)
        )
        self.out_chs = in_chs + num_layers * growth_rate
        if variant == "dense_residual":
            self.shortcut = ConvNormAct(in_chs, self.out_chs, 1, spatial_dims=spatial_dims)
            self.act = nn.ReLU(inplace=True)
        else:
            self.shortcut = None
            self.act = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = x
        for layer in self.layers:
            features = torch.cat([features, layer(features)], dim=1)
        if self.shortcut is not None and self.act is not None:
            features = self.act(features + self.shortcut(x))
        return features
