"""Classifier head: global average pool, then FC -> ReLU -> dropout -> FC, as in the prototype."""
from __future__ import annotations

import torch
import torch.nn as nn

from .layers import global_avg_pool


class ClassifierHead(nn.Module):
    """Pools a feature map and classifies it; ``num_classes=0`` makes it return the pooled features."""

    def __init__(
        self, in_chs: int, num_classes: int, *, hidden_chs: int, drop_rate: float = 0.0, spatial_dims: int = 2
    ) -> None:
        super().__init__()
        self.in_chs = in_chs
        self.hidden_chs = hidden_chs
        self.drop_rate = drop_rate
        self.global_pool = global_avg_pool(spatial_dims)
        self.flatten = nn.Flatten(1)
        self.fc1 = nn.Identity()
        self.act = nn.Identity()
        self.drop = nn.Identity()
        self.fc = nn.Identity()
        self.reset(num_classes)

    def reset(self, num_classes: int) -> None:
        """New, freshly initialised classifier layers for ``num_classes`` (0: none, output pooled features)."""
        self.num_classes = num_classes
        if num_classes > 0:
            self.fc1 = nn.Linear(self.in_chs, self.hidden_chs)
            self.act = nn.ReLU(inplace=True)
            self.drop = nn.Dropout(self.drop_rate)
            self.fc = nn.Linear(self.hidden_chs, num_classes)
        else:
            self.fc1, self.act, self.drop, self.fc = nn.Identity(), nn.Identity(), nn.Identity(), nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.flatten(self.global_pool(x))
        if pre_logits:
            return x
        return self.fc(self.drop(self.act(self.fc1(x))))
