"""Evaluation: batched inference, clinical metrics with patient-level bootstrap intervals, reports and plots."""
from .inference import predict_probs
from .metrics import (
    METRICS,
    auc_score,
    bootstrap_by_patient,
    classification_metrics,
    per_class_metrics,
    sensitivity_by_lesion_size,
)

__all__ = ["METRICS", "auc_score", "bootstrap_by_patient", "classification_metrics", "per_class_metrics",
           "predict_probs", "sensitivity_by_lesion_size"]
