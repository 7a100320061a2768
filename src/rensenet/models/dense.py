"""Dense evaluation of a window classifier over a whole image: the classic fully-convolutional evaluation.

A window of W pixels is classified from the global average of its W/R x W/R cells of the final map (R, the
network's reduction: 16 for RenseNet). Run over a whole slice, the trunk computes those cells once for every
window whose corner lies on the R-pixel grid. For a finer stride s the grid is shifted by multiples of s
(shift-and-stitch): generic networks run once per shift (:func:`shifted_window_logits`); RenseNet shares
everything up to stride s and keeps all four phases of each later 2 x 2 pooling instead, which is the same
computation without repeating the early layers (:func:`rensenet_window_logits`). A dense map differs from exact
tiling (``rensenet.base.predict.tiled_window_logits``) only where a tile's zero padding differs from the real
context around it; :class:`WindowInContext` trains and tiles a classifier with that context, and a dense map of
such a classifier sees the same ``context`` px of black beyond the slice as its tiles do.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .ecm import pooling_residual
from .heads import ThreeHeadNet
from .rensenet import RenseNet
from .transition import avg_pool2x

PhaseMap = Tuple[int, int, torch.Tensor]  # (row offset, column offset, final map of the input cropped there)


def reduction(model: nn.Module) -> int:
    """Pixels per cell of the model's final feature map."""
    info = model.feature_info
    last = info[-1] if isinstance(info, list) else info.get_dicts()[-1]
    return int(last["reduction"])


def pad_with(x: torch.Tensor, pad: int, fill: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``x`` (B, C, H, W) with ``pad`` px of ``fill`` (C,) on every side (default 0): black around a slice is the
    normalised black, where a zero would be mid-grey."""
    if not pad:
        return x
    f = (fill if fill is not None else torch.zeros(x.shape[1])).to(x)[None, :, None, None]
    return F.pad(x - f, (pad,) * 4) + f


def _check(model: nn.Module, window: int, stride: int) -> int:
    r = reduction(model)
    if window % r:
        raise ValueError(f"dense evaluation needs a window that is a multiple of the model's reduction {r} px, got "
                         f"{window}; use a window of {max(r, window // r * r)} or tiled evaluation")
    if stride < 1 or r % stride:
        raise ValueError(f"the stride must divide the model's reduction {r} px, got {stride}")
    pool = getattr(getattr(model, "head", None), "pool_type", getattr(model, "global_pool", None))
    pool_type = getattr(pool, "pool_type", pool)
    if pool_type not in (None, "avg"):
        raise ValueError(f"dense evaluation pools windows by their average; the model pools by {pool_type!r}")
    return r


def _classify(model: nn.Module, pooled: torch.Tensor) -> torch.Tensor:
    """Logits (N, K) from pooled features (N, C): the head the model applies after its global pooling."""
    if isinstance(model, ThreeHeadNet):
        return model.head.classify(pooled)
    return model.forward_head(pooled[:, :, None, None])


def _stitch(model: nn.Module, phases: List[PhaseMap], size: Tuple[int, int], window: int, stride: int,
            r: int) -> torch.Tensor:
    """Window logits (B, K, ny, nx) from the final maps of every phase: window (i, j) has its corner at
    (i * stride, j * stride)."""
    h, w = size
    ny, nx = (h - window) // stride + 1, (w - window) // stride + 1
    cells = window // r
    out: Optional[torch.Tensor] = None
    for oy, ox, fmap in phases:
        pooled = F.avg_pool2d(fmap, cells, stride=1)  # (B, C, h', w'): window (i, j) of this phase
        rows = [i for i in range(pooled.shape[2]) if oy + r * i + window <= h]
        cols = [j for j in range(pooled.shape[3]) if ox + r * j + window <= w]
        if not rows or not cols:
            continue
        pooled = pooled[:, :, : len(rows), : len(cols)]
        b, c = pooled.shape[:2]
        logits = _classify(model, pooled.permute(0, 2, 3, 1).reshape(-1, c)).reshape(b, len(rows), len(cols), -1)
        if out is None:
            out = logits.new_zeros((b, logits.shape[-1], ny, nx))
        out[:, :, oy // stride:: r // stride, ox // stride:: r // stride][:, :, : len(rows), : len(cols)] = \
            logits.permute(0, 3, 1, 2)
    assert out is not None
    return out


def rensenet_window_logits(model: RenseNet, x: torch.Tensor, *, window: int, stride: int) -> torch.Tensor:
    """Window logits of RenseNet over whole images (B, C, H, W) at ``stride``, with the ECM: everything at
    stride <= ``stride`` runs once, and each later transition keeps its four pooling phases (the backbone's
    average pooling, and the same phase for the ECM's pooling residual and max pooling)."""
    r = _check(model, window, stride)
    ecm = model.ecm
    states = [(0, 0, model.stem(x), None)]  # (row offset, column offset, backbone map, ECM map)
    current = 2
    for i, stage in enumerate(model.stages):
        if stage.transition is None:
            states = [(oy, ox, stage.block(t), e) for oy, ox, t, e in states]
            continue
        phases = ((0, 0), (0, 1), (1, 0), (1, 1)) if 2 * current > stride else ((0, 0),)
        nxt = []
        for oy, ox, t, e in states:
            pre_pool = stage.transition.conv(stage.transition.norm(t))
            for a, b in phases:
                f = pre_pool[..., a:, b:]
                e_out = None
                if ecm is not None:
                    prev = e[..., a:, b:] if e is not None else None
                    e_out = ecm.stages[i - 1](pooling_residual(f, ecm.upsample_mode), prev)
                nxt.append((oy + a * current, ox + b * current, stage.block(avg_pool2x(f)), e_out))
        states, current = nxt, current * 2
    maps = [(oy, ox, model.fusion(t, e) if ecm is not None and model.fusion is not None else t)
            for oy, ox, t, e in states]
    return _stitch(model, maps, tuple(x.shape[-2:]), window, stride, r)


def shifted_window_logits(model: nn.Module, x: torch.Tensor, *, window: int, stride: int) -> torch.Tensor:
    """Window logits of any timm CNN that pools by average: ``forward_features`` once per shift of the input by
    a multiple of ``stride`` below the model's reduction (shift-and-stitch)."""
    r = _check(model, window, stride)
    maps = [(oy, ox, model.forward_features(x[..., oy:, ox:])) for oy in range(0, r, stride)
            for ox in range(0, r, stride) if oy + window <= x.shape[-2] and ox + window <= x.shape[-1]]
    return _stitch(model, maps, tuple(x.shape[-2:]), window, stride, r)


def dense_window_logits(model: nn.Module, x: torch.Tensor, *, window: int, stride: int, context: int = 0,
                        fill: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Window logits (B, K, ny, nx) over whole images: :func:`rensenet_window_logits` for RenseNet, else
    :func:`shifted_window_logits`. Window (i, j) covers rows ``i*stride .. i*stride+window`` and the same
    columns; the image must be at least one window large.

    ``context`` (of a model trained with it) surrounds the image with that many px of ``fill``, as exact tiling
    does (:func:`rensenet.base.predict.tiled_window_logits`), and returns the same windows: a window near the edge
    then sees the black its tile and its training crops saw, not the trunk's zero padding (on 96-px lung views this
    cut the mean difference to tiling from 0.10 to 0.01)."""
    if min(x.shape[-2:]) < window:
        raise ValueError(f"an image of {tuple(x.shape[-2:])} px is smaller than the {window}-px window; pad it first")
    if context % stride:
        raise ValueError(f"the context ({context} px) must be a multiple of the stride ({stride} px)")
    ny, nx = (x.shape[-2] - window) // stride + 1, (x.shape[-1] - window) // stride + 1
    x = pad_with(x, context, fill)
    if isinstance(model, RenseNet) and model.spatial_dims == 2:
        logits = rensenet_window_logits(model, x, window=window, stride=stride)
    else:
        logits = shifted_window_logits(model, x, window=window, stride=stride)
    k = context // stride
    return logits[..., k:k + ny, k:k + nx]


class WindowInContext(nn.Module):
    """A window classifier that sees ``context`` pixels of image around its window: the model runs on the whole
    crop (window + context on every side) and pools only the window's cells of each final map. Trained this way
    (``rensenet train --context``), the classifier computes what a dense scan computes, where every window sees
    its neighbourhood; with ``context=0`` it is the model itself. ``heads=True`` returns every head
    (:class:`rensenet.models.RenseNetOutput`) for the training loss, else the prediction's logits."""

    def __init__(self, model: nn.Module, context: int = 0, *, heads: bool = False) -> None:
        super().__init__()
        r = reduction(model)
        if context < 0 or context % r:
            raise ValueError(f"the context must be a multiple of the model's reduction {r} px, got {context} px of the "
                             "model's input (--context times the input scale)")
        self.model, self.context, self.cells, self.heads = model, context, context // r, heads
        self.train(model.training)  # a wrapper in training mode would put an eval model back into training mode

    def _crop(self, fmap: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        c = self.cells
        if fmap is None or not c:
            return fmap
        if min(fmap.shape[-2:]) <= 2 * c:
            raise ValueError(f"an input of {tuple(fmap.shape[-2:])} final cells leaves no window inside "
                             f"{self.context} px of context")
        return fmap[..., c:fmap.shape[-2] - c, c:fmap.shape[-1] - c]

    def forward(self, x: torch.Tensor):
        if isinstance(self.model, ThreeHeadNet):
            out = self.model.heads_of(*(self._crop(m) for m in self.model._forward_maps(x)))
            return out if self.heads else out.fused
        return self.model.forward_head(self._crop(self.model.forward_features(x)))
