"""Localisation scores of a heatmap against a lesion mask: what no CAM library measures today.

All scores take one heatmap (H, W, >= 0) and one boolean lesion mask of the same size.
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

import numpy as np
import pandas as pd
import torch
from scipy.ndimage import distance_transform_edt

from ..base.stats import TERCILES, patient_bootstrap, size_terciles

SCORES = ("pointing_game", "energy_in_lesion", "energy_lift", "iou", "dice")


def _check(cam: np.ndarray, mask: np.ndarray) -> None:
    if cam.shape != mask.shape:
        raise ValueError(f"heatmap {cam.shape} and lesion mask {mask.shape} differ in size")
    if not mask.any():
        raise ValueError("the lesion mask is empty: localisation scores need a lesion")


def pointing_game(cam: np.ndarray, mask: np.ndarray, tolerance: float = 0.0) -> float:
    """1 if the heatmap's maximum lies within ``tolerance`` pixels of the lesion, else 0.

    When several pixels share the maximum, the share of them that hit (the expected score of breaking the tie
    at random), so a flat map scores the lesion's share of the image, not 1.
    """
    _check(cam, mask)
    peaks = cam >= cam.max()
    hit = mask if tolerance <= 0 else distance_transform_edt(~mask) <= tolerance
    return float(hit[peaks].mean())


def energy_in_lesion(cam: np.ndarray, mask: np.ndarray) -> float:
    """Share of the heatmap's mass inside the lesion (energy-based pointing game); a zero map gives the lesion share."""
    _check(cam, mask)
    cam = np.clip(cam, 0, None)
    total = cam.sum()
    return float(cam[mask].sum() / total) if total > 0 else float(mask.mean())


def energy_lift(cam: np.ndarray, mask: np.ndarray) -> float:
    """energy_in_lesion divided by the lesion's share of the image: 1.0 is no better than a uniform map."""
    return energy_in_lesion(cam, mask) / float(mask.mean())


def iou_dice(cam: np.ndarray, mask: np.ndarray, threshold: float = 0.5) -> tuple:
    """IoU and Dice of ``cam >= threshold * max(cam)`` with the lesion."""
    _check(cam, mask)
    pred = cam >= threshold * cam.max() if cam.max() > 0 else np.zeros_like(mask)
    inter, union = np.logical_and(pred, mask).sum(), np.logical_or(pred, mask).sum()
    total = pred.sum() + mask.sum()
    return float(inter / union), float(2 * inter / total)


def score_heatmaps(cams: np.ndarray, masks: np.ndarray, *, tolerance: float = 0.0, threshold: float = 0.5) -> pd.DataFrame:
    """One row of scores (and the lesion's share of the image) per (heatmap, mask) pair."""
    rows = []
    for cam, mask in zip(cams, masks):
        iou, dice = iou_dice(cam, mask, threshold)
        rows.append({"pointing_game": pointing_game(cam, mask, tolerance),
                     "energy_in_lesion": energy_in_lesion(cam, mask), "energy_lift": energy_lift(cam, mask),
                     "iou": iou, "dice": dice, "lesion_share": float(mask.mean())})
    return pd.DataFrame(rows)


def _mean_with_interval(values: np.ndarray, groups: np.ndarray, n_boot: int, seed: int) -> Dict[str, float]:
    return patient_bootstrap(lambda rows: {"mean": float(values[rows].mean())}, groups, n_boot=n_boot,
                             seed=seed)["mean"]


def summarize_localization(
    table: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0, tolerance: float = 0.0, threshold: float = 0.5
) -> Dict[str, Any]:
    """Mean of each score with a 95 % bootstrap interval (resampling patients), chance levels, and the same by
    lesion-size tercile. ``table`` needs the score columns, ``patient_id`` and optionally ``lesion_px``."""
    groups = table["patient_id"].to_numpy()
    out: Dict[str, Any] = {"n_lesions": int(len(table)), "n_patients": int(len(set(groups))),
                           "pointing_tolerance_px": tolerance, "iou_threshold": threshold,
                           "chance": {"pointing_game": float(table["lesion_share"].mean()), "energy_lift": 1.0}}
    for s in SCORES:
        out[s] = _mean_with_interval(table[s].to_numpy(float), groups, n_boot, seed)
    sizes = table["lesion_px"].to_numpy(float) if "lesion_px" in table else np.full(len(table), np.nan)
    bins = size_terciles(sizes)
    if bins is not None:
        by_size: List[Dict[str, Any]] = []
        for name in TERCILES:
            sel = (bins == name).to_numpy()
            if not sel.any():
                continue
            row = {"tercile": name, "min_px": float(sizes[sel].min()), "max_px": float(sizes[sel].max()),
                   "n": int(sel.sum()), "chance_pointing_game": float(table["lesion_share"][sel].mean())}
            for s in SCORES:
                row[s] = _mean_with_interval(table[s].to_numpy(float)[sel], groups[sel], n_boot, seed)
            by_size.append(row)
        out["by_lesion_size"] = by_size
    return out


def format_localization(summary: Dict[str, Any]) -> str:
    lines = [f"localisation on {summary['n_lesions']} lesions ({summary['n_patients']} patients); "
             f"chance pointing game {summary['chance']['pointing_game']:.3f}, chance energy lift 1.0"]
    for s in SCORES:
        m = summary[s]
        lines.append(f"  {s:<17} {m['value']:.4f}  [{m['ci_low']:.4f}, {m['ci_high']:.4f}]")
    for row in summary.get("by_lesion_size", []):
        lines.append(f"  {row['tercile']:<6} lesions ({row['min_px']:.0f}-{row['max_px']:.0f} px, n={row['n']}): "
                     f"pointing {row['pointing_game']['value']:.3f} (chance {row['chance_pointing_game']:.3f}), "
                     f"energy lift {row['energy_lift']['value']:.2f}")
    return "\n".join(lines)


def road_scores(model: torch.nn.Module, images: torch.Tensor, cams: np.ndarray, classes: Sequence[int],
                *, batch_size: int = 32) -> np.ndarray:
    """Faithfulness per image: pytorch-grad-cam's ROAD combined score (percentiles 20/40/60/80). Removing the
    least relevant pixels should keep the class probability and removing the most relevant should drop it:
    positive is faithful, near 0 is a map that does not drive the decision."""
    from pytorch_grad_cam.metrics.road import ROADCombined
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    metric = ROADCombined(percentiles=[20, 40, 60, 80])
    model.eval()
    device = next(model.parameters()).device
    scores = []
    for i in range(0, len(images), batch_size):
        targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in classes[i:i + batch_size]]
        scores.append(np.asarray(metric(images[i:i + batch_size].to(device), cams[i:i + batch_size], targets, model)))
    return np.concatenate(scores).reshape(-1) if scores else np.zeros(0)
