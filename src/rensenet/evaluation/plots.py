"""Figures of an evaluation: confusion matrix and ROC curves (matplotlib, written atomically)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay, RocCurveDisplay  # noqa: E402

from ..base.io import save_figure  # noqa: E402


def plot_confusion_matrix(path: Path, labels: np.ndarray, preds: np.ndarray, names: Sequence[str]) -> Path:
    fig, ax = plt.subplots(figsize=(3.2 + 0.5 * len(names), 2.8 + 0.5 * len(names)))
    ConfusionMatrixDisplay.from_predictions(labels, preds, labels=list(range(len(names))), display_labels=list(names),
                                            ax=ax, colorbar=False, cmap="Blues")
    ax.set_title("Confusion matrix")
    fig.tight_layout()
    return save_figure(path, fig, dpi=150)


def plot_roc(path: Path, labels: np.ndarray, probs: np.ndarray, names: Sequence[str]) -> Path:
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    classes = [1] if probs.shape[1] == 2 else range(probs.shape[1])
    for c in classes:
        if 0 < (labels == c).sum() < len(labels):
            RocCurveDisplay.from_predictions(labels == c, probs[:, c], name=str(names[c]), ax=ax)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    ax.set_title("ROC curve" + (" (one vs rest)" if probs.shape[1] > 2 else ""))
    fig.tight_layout()
    return save_figure(path, fig, dpi=150)
