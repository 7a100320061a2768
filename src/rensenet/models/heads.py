"""Classifier head: global pool, then FC -> ReLU -> dropout -> FC, as in the prototype; the timm head API."""
from __future__ import annotations

from typing import List, NamedTuple, Optional, Tuple, Union

import torch
import torch.nn as nn
from timm.models._features import feature_take_indices

from .layers import global_pool


class RenseNetOutput(NamedTuple):
    """Logits of the three heads; ``fused`` is the prediction. Without the ECM ``backbone is fused`` and ``ecm`` is None."""

    fused: torch.Tensor
    backbone: torch.Tensor
    ecm: Optional[torch.Tensor]


class ClassifierHead(nn.Module):
    """Pools a feature map and classifies it.

    ``num_classes=0`` returns the pooled features; ``pool_type=""`` (only with ``num_classes=0``, as in timm)
    returns the map itself, which is what whole-image (dense) evaluation runs on.
    """

    def __init__(self, in_chs: int, num_classes: int, *, hidden_chs: int, drop_rate: float = 0.0,
                 pool_type: str = "avg", spatial_dims: int = 2) -> None:
        super().__init__()
        self.in_chs = in_chs
        self.hidden_chs = hidden_chs
        self.drop_rate = drop_rate
        self.spatial_dims = spatial_dims
        self.pool_type = pool_type
        self.global_pool = global_pool(spatial_dims, pool_type)
        self.flatten = nn.Flatten(1)
        self.fc1 = nn.Identity()
        self.act = nn.Identity()
        self.drop = nn.Identity()
        self.fc = nn.Identity()
        self.reset(num_classes, pool_type)

    def reset(self, num_classes: int, pool_type: Optional[str] = None) -> None:
        """New, freshly initialised classifier layers for ``num_classes`` (0: none, output pooled features)."""
        if pool_type is not None:
            if pool_type == "" and num_classes > 0:
                raise ValueError("global_pool='' (no pooling) needs num_classes=0: a classifier needs pooled features")
            self.pool_type = pool_type
            self.global_pool = global_pool(self.spatial_dims, pool_type)
            self.flatten = nn.Flatten(1) if pool_type else nn.Identity()
        elif self.pool_type == "" and num_classes > 0:
            raise ValueError("this head does not pool (global_pool=''): pass global_pool='avg' with num_classes > 0")
        self.num_classes = num_classes
        if num_classes > 0:
            self.fc1 = nn.Linear(self.in_chs, self.hidden_chs)
            self.act = nn.ReLU(inplace=True)
            self.drop = nn.Dropout(self.drop_rate)
            self.fc = nn.Linear(self.hidden_chs, num_classes)
        else:
            self.fc1, self.act, self.drop, self.fc = nn.Identity(), nn.Identity(), nn.Identity(), nn.Identity()

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        """Logits from pooled features (N, C): the part a dense evaluation applies at every window position."""
        return self.fc(self.drop(self.act(self.fc1(pooled))))

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.flatten(self.global_pool(x))
        if pre_logits:
            return x
        return self.classify(x)


class ThreeHeadNet(nn.Module):
    """The timm-style API shared by every network with an ECM: a backbone map and an ECM map meet at the
    fusion layer, whose pooled features the ``head`` classifies; ``backbone_head`` and ``ecm_head`` classify
    each map alone for :class:`rensenet.RenseNetLoss`. Subclasses set ``head``, ``backbone_head`` and ``ecm_head``
    (:class:`ClassifierHead`, the last two None without an ECM) and implement ``_forward_maps``."""

    def _forward_maps(self, x: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
        """(backbone map, ECM map or None, fused map) at the final resolution."""
        raise NotImplementedError

    def _feature_maps(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Every map ``feature_info`` lists, in its order; the last is ``forward_features``."""
        raise NotImplementedError

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The fused feature map (backbone and ECM concatenated), or the backbone's last map without the ECM."""
        return self._forward_maps(x)[2]

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: Optional[Union[int, List[int]]] = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """The maps of ``feature_info`` (timm's API; what ``features_only=True`` returns)."""
        if output_fmt != "NCHW":
            raise ValueError(f"{type(self).__name__} only supports output_fmt='NCHW', got {output_fmt!r}")
        take_indices, _ = feature_take_indices(len(self.feature_info), indices)
        maps = self._feature_maps(x)
        intermediates = [maps[i] for i in take_indices]
        return intermediates if intermediates_only else (maps[-1], intermediates)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_heads(self, x: torch.Tensor) -> RenseNetOutput:
        """Logits of the fused, backbone and ECM heads (``ecm`` is None and ``backbone`` is ``fused`` without the ECM)."""
        return self.heads_of(*self._forward_maps(x))

    def heads_of(self, backbone_map: torch.Tensor, ecm_map: Optional[torch.Tensor],
                 fused_map: torch.Tensor) -> RenseNetOutput:
        """The three heads on maps already computed (:func:`rensenet.models.dense.WindowInContext` crops them)."""
        fused = self.head(fused_map)
        if ecm_map is None or self.backbone_head is None or self.ecm_head is None:
            return RenseNetOutput(fused, fused, None)
        return RenseNetOutput(fused, self.backbone_head(backbone_map), self.ecm_head(ecm_map))

    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """New heads for ``num_classes``; ``num_classes=0`` returns pooled fused features, and with
        ``global_pool=''`` the fused map itself (timm's convention)."""
        self.num_classes = num_classes
        for head in (self.head, self.backbone_head, self.ecm_head):
            if head is not None:
                head.reset(num_classes, global_pool)
