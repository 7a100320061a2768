"""Training: the run configuration, the (distributed, resumable) loop and self-describing checkpoints."""
from .checkpoint import CheckpointError, create_model, load_checkpoint, load_model
from .config import TrainConfig
from .trainer import TrainResult, train

__all__ = ["CheckpointError", "TrainConfig", "TrainResult", "create_model", "load_checkpoint", "load_model", "train"]
