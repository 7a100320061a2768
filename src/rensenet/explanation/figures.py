"""Figures a clinician reads: the CT window, the heatmap over it, the lesion outline, the prediction."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..base.io import save_figure  # noqa: E402


def draw_overlay(ax, image: np.ndarray, cam: Optional[np.ndarray], mask: Optional[np.ndarray], title: str = "",
                 alpha: float = 0.45) -> None:
    """Grayscale CT slice, heatmap (jet) on top, lesion mask outlined in green."""
    ax.imshow(image, cmap="gray", interpolation="nearest")
    if cam is not None:
        ax.imshow(cam, cmap="jet", alpha=alpha, vmin=0, vmax=1, interpolation="bilinear")
    if mask is not None and mask.any():
        ax.contour(mask.astype(float), levels=[0.5], colors="lime", linewidths=0.9)
    ax.set_title(title, fontsize=7)
    ax.axis("off")


def contact_sheet(path: Path, images: Sequence[np.ndarray], cams: Sequence[np.ndarray],
                  masks: Sequence[Optional[np.ndarray]], titles: Sequence[str], *, heading: str = "",
                  ncols: int = 8) -> Path:
    """A grid of overlays; each tile shows the slice and, below it, the heatmap over it."""
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(2 * nrows, ncols, figsize=(1.6 * ncols, 3.3 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        r, c = divmod(i, ncols)
        draw_overlay(axes[2 * r, c], images[i], None, masks[i], titles[i])
        draw_overlay(axes[2 * r + 1, c], images[i], cams[i], masks[i])
    if heading:
        fig.suptitle(heading, fontsize=9)
    fig.tight_layout()
    return save_figure(path, fig, dpi=130)


def model_comparison(path: Path, images: Sequence[np.ndarray], masks: Sequence[Optional[np.ndarray]],
                     cams_by_model: Dict[str, Sequence[np.ndarray]], *, heading: str = "") -> Path:
    """One row per model, one column per image: the same lesions under every model's heatmap."""
    names: List[str] = list(cams_by_model)
    n = len(images)
    fig, axes = plt.subplots(len(names) + 1, n, figsize=(1.5 * n, 1.6 * (len(names) + 1)), squeeze=False)
    for j in range(n):
        draw_overlay(axes[0, j], images[j], None, masks[j])
        for i, name in enumerate(names):
            draw_overlay(axes[i + 1, j], images[j], cams_by_model[name][j], masks[j])
    for i, name in enumerate(["CT"] + names):  # horizontal, left of the row: long names cannot overlap
        axes[i, 0].text(-0.08, 0.5, name.replace(" (", "\n("), transform=axes[i, 0].transAxes, va="center",
                        ha="right", fontsize=7)
    if heading:
        fig.suptitle(heading, fontsize=9)
    fig.tight_layout()
    return save_figure(path, fig, dpi=130, bbox_inches="tight")


def scan_overlay(path: Path, image: np.ndarray, pixel_map: np.ndarray, points: Sequence[tuple], *, title: str = "",
                 boxes: Sequence[tuple] = ()) -> Path:
    """A scanned slice in its window, the lesion-probability map over it, and numbered candidates (x, y, rank,
    score); ``boxes`` (x0, y0, x1, y1) outline known lesions in green."""
    h, w = image.shape
    fig, ax = plt.subplots(figsize=(min(9.0, 2.0 + w / 60), min(9.0, 2.0 + h / 60)))
    draw_overlay(ax, image, np.ma.masked_less(pixel_map, 0.05), None, title, alpha=0.35)
    for x0, y0, x1, y1 in boxes:
        ax.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="lime", lw=0.8))
    for x, y, rank, score in points:
        ax.add_patch(plt.Circle((x, y), radius=max(4.0, min(h, w) / 40), fill=False, ec="yellow", lw=1.0))
        ax.annotate(f"{rank}: {score:.2f}", (x, y), xytext=(6, -6), textcoords="offset points", color="yellow",
                    fontsize=7, weight="bold")
    fig.tight_layout()
    return save_figure(path, fig, dpi=110)
