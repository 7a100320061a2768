"""Clinical classification scores (scikit-learn), with 95 % intervals from the patient bootstrap."""
from __future__ import annotations

import warnings
from typing import Dict, List, Sequence

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
    roc_auc_score,
)

from ..base import auc_score, patient_bootstrap
from ..base.stats import TERCILES, size_terciles

METRICS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "precision", "f1", "auc", "pr_auc")


def _specificity(labels: np.ndarray, preds: np.ndarray, n_classes: int) -> np.ndarray:
    cm = confusion_matrix(labels, preds, labels=list(range(n_classes)))
    tn = cm.sum() - cm.sum(0) - cm.sum(1) + np.diag(cm)
    fp = cm.sum(0) - np.diag(cm)
    with np.errstate(invalid="ignore", divide="ignore"):
        return tn / (tn + fp)


def classification_metrics(labels: np.ndarray, probs: np.ndarray) -> Dict[str, float]:
    """The scores of :data:`METRICS`. Two classes: of the positive class 1. More: macro averages."""
    labels = np.asarray(labels)
    n = probs.shape[1]
    preds = probs.argmax(1)
    binary = n == 2
    avg = "binary" if binary else "macro"
    kw = dict(labels=list(range(n)) if not binary else None, zero_division=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec = _specificity(labels, preds, n)
        if binary:
            pr_auc = average_precision_score(labels, probs[:, 1]) if labels.any() else float("nan")
        else:
            onehot = np.eye(n)[labels]
            pr_auc = average_precision_score(onehot, probs, average="macro") if len(np.unique(labels)) == n else float("nan")
        return {
            "accuracy": float((preds == labels).mean()),
            "balanced_accuracy": float(balanced_accuracy_score(labels, preds)),
            "sensitivity": float(recall_score(labels, preds, average=avg, **kw)),
            "specificity": float(spec[1] if binary else np.nanmean(spec)),
            "precision": float(precision_score(labels, preds, average=avg, **kw)),
            "f1": float(f1_score(labels, preds, average=avg, **kw)),
            "auc": auc_score(labels, probs),
            "pr_auc": float(pr_auc),
        }


def per_class_metrics(labels: np.ndarray, probs: np.ndarray, names: Sequence[str]) -> Dict[str, Dict[str, float]]:
    """One-vs-rest scores of every class: sensitivity, precision and F1 of the argmax prediction (scikit-learn's
    per-class scores), specificity, and the one-vs-rest AUC of the class's probability."""
    labels = np.asarray(labels)
    classes = list(range(len(names)))
    precision, recall, f1, support = precision_recall_fscore_support(labels, probs.argmax(1), labels=classes,
                                                                     zero_division=0)
    spec = _specificity(labels, probs.argmax(1), len(names))
    out = {}
    for c, name in enumerate(names):
        positive = labels == c
        auc = float(roc_auc_score(positive, probs[:, c])) if 0 < positive.sum() < len(labels) else float("nan")
        out[name] = {"sensitivity": float(recall[c]), "specificity": float(spec[c]), "precision": float(precision[c]),
                     "f1": float(f1[c]), "auc": auc, "n": int(support[c])}
    return out


def bootstrap_by_patient(labels: np.ndarray, probs: np.ndarray, patients: Sequence[str], *, n_boot: int = 1000,
                         seed: int = 0, confidence: float = 0.95) -> Dict[str, Dict[str, float]]:
    """Each metric as ``{"value", "ci_low", "ci_high"}``; resamples whole patients with replacement."""
    labels = np.asarray(labels)
    return patient_bootstrap(lambda rows: classification_metrics(labels[rows], probs[rows]), patients,
                             n_boot=n_boot, seed=seed, confidence=confidence)


def sensitivity_by_lesion_size(labels: np.ndarray, preds: np.ndarray, lesion_px: np.ndarray, *,
                               positive: int = 1) -> List[Dict[str, float]]:
    """Sensitivity in each tercile of lesion size (pixels), smallest first; rows with a known size > 0 only."""
    lesion_px = np.asarray(lesion_px, dtype=float)
    has = (np.asarray(labels) == positive) & np.isfinite(lesion_px) & (lesion_px > 0)
    bins = size_terciles(lesion_px[has])
    if bins is None:
        return []
    hits = np.asarray(preds)[has] == positive
    out = []
    for name in TERCILES:
        sel = (bins == name).to_numpy()
        sizes = lesion_px[has][sel]
        out.append({"tercile": name, "min_px": float(sizes.min()) if sel.any() else float("nan"),
                    "max_px": float(sizes.max()) if sel.any() else float("nan"), "n": int(sel.sum()),
                    "sensitivity": float(hits[sel].mean()) if sel.any() else float("nan")})
    return out
