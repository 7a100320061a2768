"""Training: the (distributed, resumable) loop over images or over windows sampled from whole images."""
from .trainer import TrainResult, train

__all__ = ["TrainResult", "train"]
