"""The three-head training loss of RenseNet."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .heads import RenseNetOutput


class RenseNetLoss(nn.Module):
    """``backbone * CE(backbone) + ecm * CE(ecm) + fused * CE(fused)`` (the prototype's 1.0 / 0.3 / 0.3).

    Given plain logits, or the output of a model without the ECM (one head), it is the plain cross-entropy of
    that head: the weights only share the loss between heads that exist.
    """

    def __init__(
        self,
        *,
        backbone: float = 1.0,
        ecm: float = 0.3,
        fused: float = 0.3,
        label_smoothing: float = 0.0,
        weight: Optional[torch.Tensor] = None,
    ) -> None:
        super().__init__()
        if min(backbone, ecm, fused) < 0 or backbone + ecm + fused <= 0:
            raise ValueError(f"head weights must be >= 0 with a positive sum, got {backbone}, {ecm}, {fused}")
        self.backbone_weight = backbone
        self.ecm_weight = ecm
        self.fused_weight = fused
        self.label_smoothing = label_smoothing
        self.register_buffer("class_weight", weight, persistent=False)

    def _ce(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target, weight=self.class_weight, label_smoothing=self.label_smoothing)

    def forward(self, outputs: RenseNetOutput | torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            return self._ce(outputs, target)
        if outputs.ecm is None:
            return self._ce(outputs.fused, target)
        return (
            self.backbone_weight * self._ce(outputs.backbone, target)
            + self.ecm_weight * self._ce(outputs.ecm, target)
            + self.fused_weight * self._ce(outputs.fused, target)
        )
