"""Clinical classification scores with 95 % bootstrap intervals resampled by patient.

Resampling patients (not images) keeps the correlated slices of one patient together, as the splits do.
"""
from __future__ import annotations

import warnings
from typing import Dict, List, Optional, Sequence

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

METRICS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "precision", "f1", "auc", "pr_auc")


def auc_score(labels: np.ndarray, probs: np.ndarray) -> float:
    """ROC AUC: of class 1 for two classes, one-vs-rest macro otherwise; NaN when a class is missing."""
    labels = np.asarray(labels)
    n_classes = probs.shape[1]
    if len(np.unique(labels)) < 2:
        return float("nan")
    if n_classes == 2:
        return float(roc_auc_score(labels, probs[:, 1]))
    present = np.unique(labels)
    if len(present) < n_classes:
        return float("nan")
    return float(roc_auc_score(labels, probs, multi_class="ovr", average="macro"))


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
    """One-vs-rest sensitivity, specificity, precision, F1 and AUC for every class."""
    preds = probs.argmax(1)
    out = {}
    for c, name in enumerate(names):
        binary_labels = (labels == c).astype(int)
        binary_probs = np.stack([1 - probs[:, c], probs[:, c]], 1)
        m = classification_metrics(binary_labels, binary_probs) if binary_labels.any() else {}
        m = {k: m.get(k, float("nan")) for k in ("sensitivity", "specificity", "precision", "f1", "auc")}
        m["n"] = int(binary_labels.sum())
        # argmax over all classes, not the 0.5 threshold of the one-vs-rest pair
        tp = int(((preds == c) & (labels == c)).sum())
        m["sensitivity"] = tp / max(int((labels == c).sum()), 1)
        m["precision"] = tp / max(int((preds == c).sum()), 1)
        out[name] = m
    return out


def bootstrap_by_patient(
    labels: np.ndarray,
    probs: np.ndarray,
    patients: Sequence[str],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Dict[str, Dict[str, float]]:
    """Each metric as ``{"value", "ci_low", "ci_high"}``; resamples whole patients with replacement."""
    labels = np.asarray(labels)
    point = classification_metrics(labels, probs)
    patient_ids, inverse = np.unique(np.asarray(patients), return_inverse=True)
    rows_of = [np.flatnonzero(inverse == p) for p in range(len(patient_ids))]
    rng = np.random.default_rng(seed)
    samples: Dict[str, List[float]] = {k: [] for k in METRICS}
    for _ in range(n_boot):
        pick = rng.integers(0, len(patient_ids), len(patient_ids))
        idx = np.concatenate([rows_of[p] for p in pick])
        m = classification_metrics(labels[idx], probs[idx])
        for k in METRICS:
            samples[k].append(m[k])
    alpha = (1 - confidence) / 2
    out = {}
    for k in METRICS:
        vals = np.asarray(samples[k], dtype=float)
        vals = vals[~np.isnan(vals)]
        lo, hi = (np.quantile(vals, [alpha, 1 - alpha]) if len(vals) else (float("nan"), float("nan")))
        out[k] = {"value": point[k], "ci_low": float(lo), "ci_high": float(hi)}
    return out


def lesion_size_terciles(lesion_px: np.ndarray) -> Optional[np.ndarray]:
    """Edges [min, q1/3, q2/3, max] of the known positive lesion sizes, or None without sizes."""
    sizes = np.asarray(lesion_px, dtype=float)
    sizes = sizes[np.isfinite(sizes) & (sizes > 0)]
    if len(sizes) < 3:
        return None
    return np.quantile(sizes, [0, 1 / 3, 2 / 3, 1])


def sensitivity_by_lesion_size(
    labels: np.ndarray, preds: np.ndarray, lesion_px: np.ndarray, *, positive: int = 1
) -> List[Dict[str, float]]:
    """Sensitivity in each tercile of lesion size (pixels), smallest first; rows with a known size > 0 only."""
    lesion_px = np.asarray(lesion_px, dtype=float)
    has = (np.asarray(labels) == positive) & np.isfinite(lesion_px) & (lesion_px > 0)
    edges = lesion_size_terciles(lesion_px[has])
    if edges is None:
        return []
    bins = np.clip(np.searchsorted(edges[1:-1], lesion_px[has], side="right"), 0, 2)
    hits = np.asarray(preds)[has] == positive
    out = []
    for b, name in enumerate(("small", "medium", "large")):
        sel = bins == b
        out.append({"tercile": name, "min_px": float(lesion_px[has][sel].min()) if sel.any() else float("nan"),
                    "max_px": float(lesion_px[has][sel].max()) if sel.any() else float("nan"),
                    "n": int(sel.sum()), "sensitivity": float(hits[sel].mean()) if sel.any() else float("nan")})
    return out
