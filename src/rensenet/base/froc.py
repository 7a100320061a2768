"""FROC of lesion candidates: which candidate hits which lesion, sensitivity at false-positive rates, CPM.

A candidate hits a lesion when it lies inside the lesion's box grown by ``tolerance`` pixels. Candidates are taken
in descending score; the first to hit a lesion detects it, later hits on a detected lesion are ignored (neither
detection nor false positive), and every other candidate is a false positive. A candidate inside several boxes
detects the nearest undetected one. Sensitivity at a rate r is the sensitivity reached while false positives per
image stay at or below r (the FROC step curve, read conservatively); CPM is its mean over the rates of LUNA16.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Sequence, Tuple

import numpy as np

FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


@dataclass
class ImageMatch:
    """One image's candidates matched to its lesions."""

    fp_scores: np.ndarray  # scores of the false-positive candidates
    lesion_scores: np.ndarray  # per lesion, the score of the candidate that detected it (-inf: missed)
    lesion_sizes: np.ndarray  # per lesion, its size in pixels (NaN where unknown)
    hits: np.ndarray  # per candidate: index of the lesion it detected, -1 false positive, -2 ignored


def match_image(candidates: np.ndarray, boxes: np.ndarray, *, tolerance: float = 4.0,
                sizes: np.ndarray | None = None) -> ImageMatch:
    """``candidates`` (N, 3) as (x, y, score) in pixels of the image; ``boxes`` (M, 4) as x0 y0 x1 y1 with x1, y1
    exclusive (the manifest's format): a box covers pixel centres x0 .. x1 - 1."""
    candidates = np.asarray(candidates, dtype=float).reshape(-1, 3)
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    lo, hi = boxes[:, :2] - tolerance, boxes[:, 2:] - 1 + tolerance
    centres = (boxes[:, :2] + boxes[:, 2:] - 1) / 2
    detected = np.full(len(boxes), -np.inf)
    hits = np.full(len(candidates), -1)
    for i in np.argsort(-candidates[:, 2], kind="stable"):
        x, y, score = candidates[i]
        inside = np.flatnonzero((lo[:, 0] <= x) & (x <= hi[:, 0]) & (lo[:, 1] <= y) & (y <= hi[:, 1]))
        if not len(inside):
            continue
        free = inside[~np.isfinite(detected[inside])]
        if not len(free):
            hits[i] = -2
            continue
        nearest = free[np.argmin(((centres[free] - (x, y)) ** 2).sum(1))]
        detected[nearest], hits[i] = score, nearest
    sizes = np.full(len(boxes), np.nan) if sizes is None else np.asarray(sizes, dtype=float)
    return ImageMatch(candidates[hits == -1, 2], detected, sizes, hits)


def froc_curve(matches: Sequence[ImageMatch], lesions: np.ndarray | None = None) -> Tuple[np.ndarray, np.ndarray]:
    """(false positives per image, sensitivity) at every threshold, threshold falling. ``lesions`` (a boolean
    mask over all lesions in order) restricts the sensitivity to some lesions; false positives always count all."""
    fps = np.concatenate([m.fp_scores for m in matches]) if matches else np.zeros(0)
    found = np.concatenate([m.lesion_scores for m in matches]) if matches else np.zeros(0)
    if lesions is not None:
        found = found[lesions]
    thresholds = np.unique(np.concatenate([fps, found[np.isfinite(found)]]))[::-1]
    n_images, n_lesions = max(len(matches), 1), max(len(found), 1)
    fp_sorted, found_sorted = np.sort(fps), np.sort(found)
    fp_rate = (len(fp_sorted) - np.searchsorted(fp_sorted, thresholds, side="left")) / n_images
    sensitivity = (len(found_sorted) - np.searchsorted(found_sorted, thresholds, side="left")) / n_lesions
    return fp_rate, sensitivity


def sensitivity_at(matches: Sequence[ImageMatch], rates: Sequence[float] = FP_RATES,
                   lesions: np.ndarray | None = None) -> Dict[float, float]:
    """Sensitivity reached while false positives per image stay <= each rate."""
    fp_rate, sensitivity = froc_curve(matches, lesions)
    return {float(r): float(sensitivity[fp_rate <= r].max()) if (fp_rate <= r).any() else 0.0 for r in rates}


def cpm(matches: Sequence[ImageMatch], rates: Sequence[float] = FP_RATES, lesions: np.ndarray | None = None) -> float:
    """The competition performance metric: mean sensitivity at ``rates`` false positives per image."""
    return float(np.mean(list(sensitivity_at(matches, rates, lesions).values())))
