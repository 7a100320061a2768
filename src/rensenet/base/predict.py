"""The one batched-prediction loop: every command that turns images into class probabilities goes through it."""
from __future__ import annotations

from typing import Iterable, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.dense import pad_with


@torch.no_grad()
def predict_logits(model: nn.Module, batches: Iterable[torch.Tensor], device: torch.device, *,
                   amp: bool = False) -> torch.Tensor:
    """Logits (N, C) on the CPU, in float32, for an iterable of input batches (B, C, H, W); eval mode throughout."""
    was_training = model.training
    model.eval()
    out = []
    try:
        for x in batches:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                out.append(model(x.to(device, non_blocking=True)).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, 0)


def predict_probs(model: nn.Module, loader: Iterable, device: torch.device, *,
                  amp: bool = False) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(probabilities (N, C), labels (N,), dataset indices (N,)) over a loader of sample dicts."""
    labels, indices = [], []

    def images():
        for batch in loader:
            labels.append(torch.as_tensor(batch["label"]))
            indices.append(torch.as_tensor(batch["index"]))
            yield batch["image"]

    probs = torch.softmax(predict_logits(model, images(), device, amp=amp), dim=1)
    return probs.numpy(), torch.cat(labels).numpy(), torch.cat(indices).numpy()


def batches_of(images: torch.Tensor, batch_size: int) -> Iterable[torch.Tensor]:
    """``images`` (N, ...) in consecutive batches of ``batch_size``."""
    return (images[i:i + batch_size] for i in range(0, len(images), batch_size))


def tiled_window_logits(model: nn.Module, x: torch.Tensor, *, window: int, stride: int, device: torch.device,
                        context: int = 0, fill: Optional[torch.Tensor] = None, batch_size: int = 256) -> torch.Tensor:
    """The exact reference of dense evaluation: every window of images (B, C, H, W) cut out and classified on its
    own, in batches. Window (i, j) has its corner at (i * stride, j * stride); returns logits (B, K, ny, nx).
    With ``context`` each tile carries that many pixels of the image around its window (``fill`` (C,), default 0,
    beyond the image), and ``model`` must pool only the window's cells (:class:`rensenet.models.WindowInContext`)."""
    x = pad_with(x, context, fill)
    size = window + 2 * context
    tiles = x.unfold(2, size, stride).unfold(3, size, stride)  # (B, C, ny, nx, S, S), a view
    b, c, ny, nx = tiles.shape[:4]
    flat = tiles.permute(0, 2, 3, 1, 4, 5).reshape(-1, c, size, size)
    logits = predict_logits(model, batches_of(flat, batch_size), device)
    return logits.reshape(b, ny, nx, -1).permute(0, 3, 1, 2)
