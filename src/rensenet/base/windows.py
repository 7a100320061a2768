"""Whole images, scored by a window classifier: the shared core of ``scan``, hard-negative mining and validation
during whole-image training.

:class:`WindowScorer` presents a slice as the model saw its training windows (normalised with the training mean
and std, resampled by the training scale, padded to at least one window) and returns the probability of every
window at a stride (dense evaluation, :func:`rensenet.models.dense.dense_window_logits`). :func:`coverage_map`
turns those into a per-pixel lesion-probability map and :func:`find_peaks` into candidate points.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from scipy import ndimage

from ..models.dense import WindowInContext, dense_window_logits, pad_with
from .cam import DEFAULT_METHOD, compute_cams
from .config import TrainConfig
from .predict import tiled_window_logits

#: Defaults of whole-image scanning, chosen on the val splits of the whole-image tasks (docs/scan.md).
DEFAULT_STRIDE = 8
DEFAULT_POSITIVE_CLASS = 1
DEFAULT_MAX_PEAKS = 40
REFINE_MODES = ("cam", "map")
DEFAULT_REFINE = "cam"


def nms_radius(window: float) -> float:
    """Default distance between two candidates: an eighth of the window (8 px for 64-px windows)."""
    return window / 8


@dataclass(frozen=True)
class Peak:
    y: float  # row, pixels of the map
    x: float  # column
    score: float


@dataclass(frozen=True)
class Candidate:
    """A point of a slice, in its original pixels."""

    y: float
    x: float
    score: float  # the probability map's value at its peak
    size_px: float  # pixels of its heatmap's region above half the heatmap's peak
    map_y: float  # where the map's peak was, before CAM refinement
    map_x: float


@dataclass
class WindowMap:
    """Window probabilities of one slice. The model saw the slice resampled by ``factor`` (model pixels per
    original pixel) to ``model_shape``, then padded to at least one window; window (i, j) covers model pixels from
    (i, j) * stride on, that is original pixels from (i, j) * stride / factor on."""

    probs: np.ndarray  # (ny, nx)
    window: int  # model pixels
    stride: int  # model pixels
    factor: float
    shape: Tuple[int, int]  # of the original slice
    model_shape: Tuple[int, int]  # of the resampled slice, before padding
    margin: int = 0  # model pixels of black the scorer added on every side

    @property
    def padded(self) -> bool:
        """The slice was smaller than one window."""
        return min(self.model_shape) < self.window

    @property
    def window_px(self) -> float:
        """Original pixels a window covers."""
        return self.window / self.factor

    def corner(self, i: float, j: float) -> Tuple[float, float]:
        """Original (row, column) of the corner of window (i, j) (negative where it starts in the margin)."""
        return (i * self.stride - self.margin) / self.factor, (j * self.stride - self.margin) / self.factor

    def pixel_map(self) -> np.ndarray:
        """(H, W) per-pixel mean probability of the windows covering each pixel (:func:`coverage_map`), at the
        original slice's size."""
        h, w = self.model_shape
        m = self.margin
        cov = coverage_map(self.probs, window=self.window, stride=self.stride,
                           shape=(max(h + 2 * m, self.window), max(w + 2 * m, self.window)))[m:m + h, m:m + w]
        if (h, w) != tuple(self.shape):
            cov = F.interpolate(torch.from_numpy(np.ascontiguousarray(cov))[None, None], size=tuple(self.shape),
                                mode="bilinear", align_corners=False)[0, 0].numpy()
        return np.ascontiguousarray(cov, dtype=np.float32)


class WindowScorer:
    """The probability of class ``positive`` for every window of a slice, at ``stride`` pixels of the model's input
    (the training window's pixels after ``cfg.scale``), optionally resampled further by ``extra_scale`` (a pixel
    spacing correction). Works on the model it is given: pass one through ``optimize_for_inference`` for speed.

    The slice is surrounded by ``margin`` pixels of black (default half a window), so that every pixel is covered
    by as many windows as any other: without it, pixels near an edge are covered by fewer windows, and a lesion's
    plateau on the map runs out to the edge (on kidney-stone-scans val, map peaks scored CPM 0.35 without the
    margin and 0.43 with it, CAM-refined 0.59 and 0.74).

    ``exact=True`` classifies every window on its own (exact tiling) instead, many times slower (more on larger
    slices and with context), each tile with the ``cfg.context`` px of image the model was trained to see around a window
    (``rensenet train --context``). The dense map's windows see their whole neighbourhood: for a model trained on
    bare windows that is context it never saw, for one trained with context it is what it was trained on, and
    beyond the margin it sees the same ``cfg.context`` px of black as the tiles (benchmarks/WHOLE_IMAGE.md
    measures both)."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, *, stride: int = DEFAULT_STRIDE,
                 device: torch.device = torch.device("cpu"), positive: int = DEFAULT_POSITIVE_CLASS,
                 margin: Optional[int] = None, exact: bool = False) -> None:
        if cfg.img_size is None or cfg.mean is None or cfg.std is None:
            raise ValueError("the checkpoint's config has no img_size/mean/std: it was not written by `rensenet train`")
        self.model, self.cfg, self.stride, self.device, self.positive = model.eval(), cfg, stride, device, positive
        self.window = int(cfg.img_size)
        self.margin = self.window // 2 if margin is None else margin  # model pixels of black on every side
        self.exact = exact  # every window classified on its own, with its own zero padding, as in training

    def prepare(self, image: np.ndarray, extra_scale: float = 1.0) -> Tuple[torch.Tensor, float, Tuple[int, int]]:
        """(model input (1, C, H', W'), the resampling factor, the resampled size before padding) of a slice
        (C, H, W) in [0, 1]."""
        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
        factor = self.cfg.scale * extra_scale
        if factor != 1.0:
            x = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False, antialias=factor < 1)
        h, w = x.shape[-2:]
        m = self.margin
        # black (the lower end of the window, as the air around a body) around it, and up to one window
        x = F.pad(x, (m, m + max(0, self.window - w - 2 * m), m, m + max(0, self.window - h - 2 * m)))
        mean = torch.tensor(self.cfg.mean, dtype=torch.float32)[None, :, None, None]
        std = torch.tensor(self.cfg.std, dtype=torch.float32)[None, :, None, None]
        return (x - mean) / std, factor, (int(h), int(w))

    @property
    def black(self) -> torch.Tensor:
        """Black (0 before normalisation) per channel, as the model sees it: what pads a tile or a crop."""
        return -torch.tensor(self.cfg.mean, dtype=torch.float32) / torch.tensor(self.cfg.std, dtype=torch.float32)

    def window_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Window logits (1, K, ny, nx) of a prepared model input: the dense map, or exact tiling."""
        context = self.cfg.model_context
        if self.exact:  # trained with context: each tile with its own, pooled over its window
            model = WindowInContext(self.model, context) if context else self.model
            return tiled_window_logits(model, x, window=self.window, stride=self.stride, device=self.device,
                                       context=context, fill=self.black)
        with torch.no_grad():
            return dense_window_logits(self.model, x.to(self.device), window=self.window, stride=self.stride,
                                       context=context, fill=self.black)

    def _score(self, image: np.ndarray, extra_scale: float) -> Tuple[WindowMap, torch.Tensor]:
        x, factor, model_shape = self.prepare(image, extra_scale)
        logits = self.window_logits(x)
        probs = torch.softmax(logits.float(), dim=1)[0, self.positive].cpu().numpy()
        return WindowMap(probs, self.window, self.stride, factor, tuple(image.shape[-2:]), model_shape, self.margin), x

    def __call__(self, image: np.ndarray, extra_scale: float = 1.0) -> WindowMap:
        return self._score(image, extra_scale)[0]

    def candidates(self, image: np.ndarray, *, refine: str = DEFAULT_REFINE, radius: Optional[float] = None,
                   max_peaks: int = DEFAULT_MAX_PEAKS, threshold: float = 0.0, cam_peaks: int = 1,
                   cam_method: Optional[str] = None, cam_layers: Optional[Sequence[str]] = None,
                   extra_scale: float = 1.0) -> Tuple[WindowMap, np.ndarray, List[Candidate]]:
        """(window map, per-pixel map, candidates) of a slice (C, H, W) in [0, 1].

        The map's peaks, ``radius`` px apart (default :func:`nms_radius`), become candidates; with
        ``refine="cam"`` each moves to the peak of its window's heatmap. Where that lies within ``radius`` of a
        higher candidate, the heatmap's next peak (up to ``cam_peaks`` peaks above half its maximum, scored by its
        strength relative to the first) is taken, and where there is none the peak is dropped: the peaks of one
        lesion's plateau refine onto the lesion, while a window over a cluster of stones can show each of them.
        ``cam_method`` and ``cam_layers`` choose the heatmap (default: the model's own)."""
        if refine not in REFINE_MODES:
            raise ValueError(f"unknown refine mode {refine!r}: use one of {REFINE_MODES}")
        wmap, x = self._score(image, extra_scale)
        pixel = wmap.pixel_map()
        radius = radius or nms_radius(wmap.window_px)
        peaks = find_peaks(pixel, radius=radius, threshold=threshold, max_peaks=max_peaks)
        m, f = self.margin, wmap.factor
        cams = heatmap_peaks(self.model, x, [(p.y * f + m, p.x * f + m) for p in peaks], window=self.window,
                             fill=self.black, target_class=self.positive, most=cam_peaks, method=cam_method,
                             target_layers=cam_layers)
        out: List[Candidate] = []
        taken = lambda y, x: any((y - c.y) ** 2 + (x - c.x) ** 2 <= radius ** 2 for c in out)  # noqa: E731
        for p, spots in zip(peaks, cams):
            options = [((cy - m) / f, (cx - m) / f, area, rel) for cy, cx, area, rel in spots] if refine == "cam" \
                else [(p.y, p.x, spots[0][2], 1.0)]
            for y, xx, area, rel in options:  # the heatmap's strongest peak first; a lesion already found: the next
                y, xx = float(np.clip(y, 0, wmap.shape[0] - 1)), float(np.clip(xx, 0, wmap.shape[1] - 1))
                if not taken(y, xx):  # a weaker peak of the heatmap is a less certain candidate
                    out.append(Candidate(y, xx, p.score * rel, area / f ** 2, p.y, p.x))
                    break
        return wmap, pixel, out


def heatmap_peaks(model: nn.Module, x: torch.Tensor, points: List[Tuple[float, float]], *, window: int,
              fill: torch.Tensor, target_class: int = DEFAULT_POSITIVE_CLASS,
              most: int = 1, method: Optional[str] = None,
              target_layers: Optional[Sequence[str]] = None) -> List[List[Tuple[float, float, int, float]]]:
    """For each point (y, x) of the model input ``x`` (1, C, H, W), the peaks of the ``target_class`` heatmap in the
    window centred on it (by default the model's CAM method and layers, chosen on val by ``rensenet explain``):
    up to ``most`` local maxima above half the highest, strongest first, each as (y, x, pixels of its region above
    half its value, its value relative to the highest). ``fill`` (C,) is the normalised black used where a window
    leaves the input."""
    if not points:
        return []
    corners = [(int(round(py - window / 2)), int(round(px - window / 2))) for py, px in points]
    padded = pad_with(x, window, fill)
    crops = torch.cat([padded[..., y + window:y + 2 * window, c + window:c + 2 * window] for y, c in corners])
    cams = compute_cams(model, crops, [target_class] * len(crops), method=method or DEFAULT_METHOD,
                        target_layers=target_layers, batch_size=64)  # one batch per slice
    out = []
    for (cy, cx), cam in zip(corners, cams):
        top = float(cam.max())
        local = (cam == ndimage.maximum_filter(cam, size=5)) & (cam >= 0.5 * top)
        ys, xs = np.nonzero(local)
        spots = []
        for i in np.argsort(-cam[ys, xs], kind="stable")[:most]:
            labels, _ = ndimage.label(cam >= 0.5 * cam[ys[i], xs[i]])
            spots.append((float(cy + ys[i]), float(cx + xs[i]), int((labels == labels[ys[i], xs[i]]).sum()),
                          float(cam[ys[i], xs[i]]) / max(top, 1e-12)))
        out.append(spots or [(float(cy + window // 2), float(cx + window // 2), 0, 1.0)])
    return out


def coverage_map(window_probs: np.ndarray, *, window: int, stride: int, shape: Tuple[int, int]) -> np.ndarray:
    """Per pixel, the mean probability of the windows that cover it: (H, W) from window probabilities (ny, nx)
    whose corners lie every ``stride`` pixels. It is what a sliding-window average of constant tile
    predictions gives (MONAI's ``sliding_window_inference`` with ``mode="constant"``), without the tiles.
    Pixels no window covers (past the last full window) take the nearest covered value."""
    h, w = shape
    ny, nx = window_probs.shape
    acc = np.zeros((h + 1, w + 1))
    cnt = np.zeros((h + 1, w + 1))
    ys, xs = np.arange(ny) * stride, np.arange(nx) * stride
    for grid, weight in ((acc, window_probs), (cnt, np.ones_like(window_probs))):
        for dy, dx, sign in ((0, 0, 1), (window, 0, -1), (0, window, -1), (window, window, 1)):
            np.add.at(grid, (ys[:, None] + dy, xs[None, :] + dx), sign * weight)
    acc, cnt = acc.cumsum(0).cumsum(1)[:h, :w], cnt.cumsum(0).cumsum(1)[:h, :w]
    covered_h, covered_w = (ny - 1) * stride + window, (nx - 1) * stride + window
    out = np.divide(acc, cnt, out=np.zeros_like(acc), where=cnt > 0.5)
    if covered_h < h:
        out[covered_h:] = out[covered_h - 1]
    if covered_w < w:
        out[:, covered_w:] = out[:, covered_w - 1:covered_w]
    return out.astype(np.float32)


def find_peaks(score_map: np.ndarray, *, radius: float, threshold: float = 0.0, max_peaks: int = 100) -> List[Peak]:
    """Greedy non-maximum suppression: the highest pixel, then the highest farther than ``radius`` px from
    every peak taken, and so on, down to ``threshold``. Ties (the plateaus of a window map) go in row-major order."""
    h, w = score_map.shape
    r = int(np.ceil(radius))
    dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
    disk = dy ** 2 + dx ** 2 <= radius ** 2
    left = np.full((h + 2 * r, w + 2 * r), -np.inf, dtype=np.float64)  # padded: a disk at the border needs no clip
    left[r:r + h, r:r + w] = score_map
    peaks: List[Peak] = []
    while len(peaks) < max_peaks:
        i = int(np.argmax(left))  # the first maximum in row-major order
        y, x = divmod(i, w + 2 * r)
        if not left[y, x] >= threshold:
            break
        peaks.append(Peak(float(y - r), float(x - r), float(score_map[y - r, x - r])))
        window = left[y - r:y + r + 1, x - r:x + r + 1]
        window[disk] = -np.inf
    return peaks
