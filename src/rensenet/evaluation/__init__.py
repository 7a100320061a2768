"""Evaluation: clinical metrics with patient-level bootstrap intervals, reports and plots."""
from .classification import (
    METRICS,
    bootstrap_by_patient,
    classification_metrics,
    per_class_metrics,
    sensitivity_by_lesion_size,
)

__all__ = ["METRICS", "bootstrap_by_patient", "classification_metrics", "per_class_metrics",
           "sensitivity_by_lesion_size"]
