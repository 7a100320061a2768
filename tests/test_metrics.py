"""Clinical metrics against hand-computed values, and the patient-level bootstrap."""
from __future__ import annotations

import numpy as np
import pytest

from rensenet.evaluation import bootstrap_by_patient, classification_metrics, per_class_metrics, sensitivity_by_lesion_size


def _probs(p1: list) -> np.ndarray:
    p1 = np.asarray(p1, dtype=float)
    return np.stack([1 - p1, p1], 1)


def test_binary_metrics_by_hand() -> None:
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    probs = _probs([0.9, 0.8, 0.7, 0.2, 0.6, 0.1, 0.1, 0.3, 0.2, 0.4])
    m = classification_metrics(labels, probs)
    # TP 3, FN 1, FP 1, TN 5
    assert m["sensitivity"] == pytest.approx(3 / 4)
    assert m["specificity"] == pytest.approx(5 / 6)
    assert m["precision"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(3 / 4)
    assert m["accuracy"] == pytest.approx(8 / 10)
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 5 / 6) / 2)
    # AUC: pairs (pos, neg) ranked right: 0.9, 0.8, 0.7 beat all 6 -> 18; 0.2 beats 0.1, 0.1 and ties 0.2 -> 2.5
    assert m["auc"] == pytest.approx((18 + 2.5) / 24)


def test_multiclass_and_per_class() -> None:
    labels = np.array([0, 1, 2, 2])
    probs = np.array([[0.8, 0.1, 0.1], [0.1, 0.7, 0.2], [0.2, 0.2, 0.6], [0.5, 0.3, 0.2]])
    m = classification_metrics(labels, probs)
    assert m["accuracy"] == pytest.approx(0.75) and m["sensitivity"] == pytest.approx((1 + 1 + 0.5) / 3)
    pc = per_class_metrics(labels, probs, ["a", "b", "c"])
    assert pc["c"]["sensitivity"] == pytest.approx(0.5) and pc["a"]["precision"] == pytest.approx(0.5)
    assert pc["c"]["n"] == 2


def test_bootstrap_resamples_whole_patients() -> None:
    # patient A: 50 correct images, patient B: 50 wrong ones. Resampling patients can only give accuracy
    # 0, 0.5 or 1; resampling images would give a narrow interval around 0.5.
    labels = np.array([1] * 50 + [1] * 50)
    probs = _probs([0.9] * 50 + [0.1] * 50)
    patients = ["A"] * 50 + ["B"] * 50
    ci = bootstrap_by_patient(labels, probs, patients, n_boot=300, seed=1)["accuracy"]
    assert ci["value"] == pytest.approx(0.5)
    assert ci["ci_low"] == 0.0 and ci["ci_high"] == 1.0


def test_bootstrap_interval_contains_point_estimate() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    probs = _probs(np.clip(labels * 0.4 + rng.random(200) * 0.6, 0, 1))
    out = bootstrap_by_patient(labels, probs, [f"p{i // 4}" for i in range(200)], n_boot=200)
    for m in out.values():
        assert m["ci_low"] <= m["value"] <= m["ci_high"]


def test_sensitivity_by_lesion_size_terciles() -> None:
    labels = np.array([1] * 9 + [0] * 3)
    sizes = np.array([5, 6, 7, 50, 60, 70, 500, 600, 700, 0, 0, 0], dtype=float)
    preds = np.array([0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0])
    rows = sensitivity_by_lesion_size(labels, preds, sizes)
    assert [r["n"] for r in rows] == [3, 3, 3]
    assert [r["sensitivity"] for r in rows] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert rows[0]["max_px"] == 7 and rows[2]["min_px"] == 500
