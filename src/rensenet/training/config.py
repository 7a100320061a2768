"""Everything that defines a training run; saved as config.json so the run can be reproduced and resumed."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple


@dataclass
class TrainConfig:
    """A training run. Defaults follow the paper's recipe (SGD, momentum 0.9, lr 1e-2, wd 1e-4, cosine)."""

    data: str
    model: str = "rensenet_s"
    out: str = "runs/rensenet"
    epochs: int = 12
    batch_size: int = 32  # global: divided between processes under torchrun
    img_size: Optional[int] = None  # None: the training images' own size
    lr: float = 1e-2
    optimizer: str = "sgd"  # sgd | adamw
    momentum: float = 0.9
    weight_decay: float = 1e-4
    scheduler: str = "cosine"  # cosine | constant
    warmup_epochs: float = 0.0
    seed: int = 42
    augment: str = "standard"
    max_shift: int = 8
    in_chans: int = 1
    window: Optional[str] = None  # CT window for DICOM inputs (PNG/JPG are already windowed)
    train_split: str = "train"
    val_split: str = "val"
    head_weights: Tuple[float, float, float] = (1.0, 0.3, 0.3)  # backbone, ECM, fused (RenseNet only)
    label_smoothing: float = 0.0
    model_kwargs: Dict[str, Any] = field(default_factory=dict)
    early_stopping: int = 0  # stop after this many epochs without a better val AUC; 0 = off
    workers: int = 0
    amp: Optional[bool] = None  # None: on for CUDA, off on CPU
    channels_last: bool = False  # NHWC memory for 2D models: same results up to rounding; speed depends on the machine
    device: str = "auto"
    progress: bool = True
    resume: bool = False
    # filled in from the data when training starts
    num_classes: Optional[int] = None
    class_names: Optional[List[str]] = None
    mean: Optional[List[float]] = None
    std: Optional[List[float]] = None

    #: Fields that may differ between an interrupted run and its --resume.
    RESUMABLE_CHANGES = ("epochs", "early_stopping", "workers", "progress", "device", "out", "data", "resume",
                         "channels_last")

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs} and {self.batch_size}")
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        if self.scheduler not in ("cosine", "constant"):
            raise ValueError(f"scheduler must be 'cosine' or 'constant', got {self.scheduler!r}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        self.head_weights = tuple(float(w) for w in self.head_weights)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training settings {unknown}")
        return cls(**values)
