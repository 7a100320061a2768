"""The base every command stands on: the typed run config, safe checkpoints, model creation, the device, the one
batched-prediction loop, atomic output, the patient bootstrap and the selection scores.

Below training, evaluation, explanation and scanning; it imports only ``models`` and ``data``.
"""
from .checkpoint import CheckpointError, create_model, load_checkpoint, load_model, save_checkpoint, weights_file
from .config import TrainConfig
from .device import resolve_device
from .metrics import auc_score
from .predict import batches_of, predict_logits, predict_probs
from .stats import patient_bootstrap

__all__ = ["CheckpointError", "TrainConfig", "auc_score", "batches_of", "create_model", "load_checkpoint",
           "load_model", "patient_bootstrap", "weights_file", "predict_logits", "predict_probs", "resolve_device", "save_checkpoint"]
