"""The scores that choose a checkpoint during training and report it in evaluation (one definition each)."""
from __future__ import annotations

import numpy as np


def auc_score(labels: np.ndarray, probs: np.ndarray) -> float:
    """ROC AUC: of class 1 for two classes, one-vs-rest macro otherwise; NaN when a class is missing."""
    from sklearn.metrics import roc_auc_score  # here, not at import: scikit-learn costs a scan's start-up 1 s

    labels = np.asarray(labels)
    n_classes = probs.shape[1]
    present = np.unique(labels)
    if len(present) < 2 or (n_classes > 2 and len(present) < n_classes):
        return float("nan")
    if n_classes == 2:
        return float(roc_auc_score(labels, probs[:, 1]))
    return float(roc_auc_score(labels, probs, multi_class="ovr", average="macro"))
