"""Everything that defines a training run, typed: saved as config.json and in every checkpoint, so a run can be
reproduced, resumed, evaluated and scanned from the file alone.

Each field's ``metadata`` says how the ``rensenet train`` command line offers it (``cli.args`` generates the
arguments from this class); fields marked ``derived`` are filled in from the data when training starts.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple


from ..data.transforms import AUGMENTATIONS


def _opt(help: str, **kw: Any) -> Dict[str, Any]:
    return {"help": help, **kw}


@dataclass
class TrainConfig:
    """A training run. Defaults follow the paper's recipe (SGD, momentum 0.9, lr 1e-2, wd 1e-4, cosine)."""

    data: str = field(metadata=_opt("folder with manifest.csv (or class sub-folders), or a CSV file", required=True))
    model: str = field(default="rensenet_s", metadata=_opt("rensenet_s, rensenet_m or any timm model name"))
    out: str = field(default="runs/rensenet", metadata=_opt("output folder (config.json, history.csv, last.pt, "
                                                             "best.pt)", required=True))
    epochs: int = field(default=12, metadata=_opt("training epochs"))
    batch_size: int = field(default=32, metadata=_opt("global batch, split among processes under torchrun"))
    img_size: Optional[int] = field(default=None, metadata=_opt("model input size (default: the images' own size, "
                                                                 "or --patch-size)"))
    lr: float = field(default=1e-2, metadata=_opt("learning rate"))
    optimizer: str = field(default="sgd", metadata=_opt("sgd (momentum, no Nesterov) or adamw",
                                                        choices=("sgd", "adamw")))
    momentum: float = field(default=0.9, metadata=_opt("SGD momentum"))
    weight_decay: float = field(default=1e-4, metadata=_opt("weight decay (not on norms and biases)"))
    scheduler: str = field(default="cosine", metadata=_opt("learning-rate schedule, per step",
                                                           choices=("cosine", "constant")))
    warmup_epochs: float = field(default=0.0, metadata=_opt("linear warm-up, in epochs"))
    seed: int = field(default=42, metadata=_opt("seed of weights, sampling and augmentation"))
    augment: str = field(default="standard", metadata=_opt("training augmentation", choices=AUGMENTATIONS))
    max_shift: int = field(default=8, metadata=_opt("largest lesion-safe shift in px (shift/standard/strong)"))
    in_chans: int = field(default=1, metadata=_opt("1 for slices, 3 for neighbouring slices as channels (2.5D)"))
    window: Optional[str] = field(default=None, metadata=_opt(
        "CT window: applied to DICOM/NIfTI inputs, and recorded for PNG/JPG data (already windowed) so that "
        "`rensenet scan` windows DICOM the same way: lung, abdomen, bone, brain or W,L"))
    pixel_spacing: Optional[float] = field(default=None, metadata=_opt(
        "mm per pixel of the training images, if known: `rensenet scan --spacing auto` resamples to it"))
    train_split: str = field(default="train", metadata=_opt("split to train on"))
    val_split: str = field(default="val", metadata=_opt("split that selects best.pt"))
    head_weights: Tuple[float, float, float] = field(default=(1.0, 0.3, 0.3), metadata=_opt(
        "loss weights of the backbone, ECM and fused heads (RenseNet models)", nargs=3))
    label_smoothing: float = field(default=0.0, metadata=_opt("cross-entropy label smoothing"))
    model_kwargs: Dict[str, Any] = field(default_factory=dict, metadata=_opt(
        'model options as JSON, e.g. \'{"ecm": false}\'', json=True))
    early_stopping: int = field(default=0, metadata=_opt("stop after this many epochs without a better "
                                                         "selection score; 0 = off"))
    workers: int = field(default=0, metadata=_opt("data loader processes"))
    amp: Optional[bool] = field(default=None, metadata=_opt("mixed precision (default: on for CUDA)"))
    channels_last: bool = field(default=False, metadata=_opt(
        "NHWC memory: same results up to rounding; faster on some machines (benchmarks/PERF.md)"))
    device: str = field(default="auto", metadata=_opt("auto, cpu, cuda, cuda:1, ..."))
    progress: bool = field(default=True, metadata=_opt("progress bars"))
    resume: bool = field(default=False, metadata=_opt("continue the interrupted run in --out"))
    class_names: Optional[List[str]] = field(default=None, metadata=_opt(
        "names of classes 0..n-1; needed when some class has no image (derived from label_name otherwise)",
        nargs="+"))
    # --- training from whole images (a manifest of whole slices with lesion boxes or masks) ----------------------
    patch_size: Optional[int] = field(default=None, metadata=_opt(
        "train on windows of this size sampled on the fly from whole images (positives hold a whole lesion, "
        "negatives touch none); unset: train on the images as they are"))
    windows_per_image: int = field(default=8, metadata=_opt("windows sampled from each image per epoch"))
    pos_fraction: float = field(default=0.5, metadata=_opt("share of positive windows"))
    hard_negatives: int = field(default=0, metadata=_opt(
        "after each epoch, rescan the training images and add the K highest-scoring false-positive windows of "
        "each image to the negatives; 0 = off"))
    hard_fraction: float = field(default=0.5, metadata=_opt("share of the negatives drawn from the mined ones"))
    mining_stride: int = field(default=8, metadata=_opt("stride in px of the rescan that mines hard negatives"))
    lesion_margin: int = field(default=2, metadata=_opt("px between a positive window's edge and its lesion"))
    clearance: int = field(default=4, metadata=_opt("px a negative window keeps from every lesion"))
    context: int = field(default=0, metadata=_opt(
        "px of image around each training window that the model sees but does not classify: only the window's "
        "cells of the final map are pooled, so a dense scan (where every window sees its neighbourhood) computes "
        "what was trained; times the input scale (--img-size / --patch-size), a multiple of the model's "
        "reduction (16 px for RenseNet); needs --patch-size"))
    # --- filled in from the data when training starts ----------------------------------------------------------
    num_classes: Optional[int] = field(default=None, metadata={"derived": True})
    mean: Optional[List[float]] = field(default=None, metadata={"derived": True})
    std: Optional[List[float]] = field(default=None, metadata={"derived": True})
    native_size: Optional[int] = field(default=None, metadata={"derived": True, "help": (
        "size of a training window before any resize: img_size / native_size is the scale a scan resamples by")})

    #: Fields that may differ between an interrupted run and its --resume.
    RESUMABLE_CHANGES = ("epochs", "early_stopping", "workers", "progress", "device", "out", "data", "resume",
                         "channels_last")
    #: Fields filled in from the data (never compared on resume).
    DERIVED = ("num_classes", "class_names", "mean", "std", "img_size", "native_size")

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs} and {self.batch_size}")
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        if self.scheduler not in ("cosine", "constant"):
            raise ValueError(f"scheduler must be 'cosine' or 'constant', got {self.scheduler!r}")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"unknown augmentation {self.augment!r}: choose one of {AUGMENTATIONS}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.patch_size is not None and self.patch_size < 8:
            raise ValueError(f"patch_size must be at least 8 px, got {self.patch_size}")
        if not 0.0 <= self.pos_fraction <= 1.0 or not 0.0 <= self.hard_fraction <= 1.0:
            raise ValueError(f"pos_fraction and hard_fraction must be in [0, 1], got {self.pos_fraction} and "
                             f"{self.hard_fraction}")
        if self.hard_negatives and self.patch_size is None:
            raise ValueError("--hard-negatives mines windows of whole images: it needs --patch-size")
        if self.context and (self.patch_size is None or self.context < 0):
            raise ValueError(f"--context {self.context} needs --patch-size and a value >= 0: it is the image around "
                             "each window sampled from whole images")
        if self.windows_per_image < 1:
            raise ValueError(f"windows_per_image must be >= 1, got {self.windows_per_image}")
        self.head_weights = tuple(float(w) for w in self.head_weights)  # type: ignore[assignment]

    @property
    def scale(self) -> float:
        """How much the training windows were enlarged before the model saw them (2.0 for a 2x-input trial)."""
        return float(self.img_size) / float(self.native_size) if self.img_size and self.native_size else 1.0

    @property
    def model_context(self) -> int:
        """``context`` in pixels of the model's input (after the input scale)."""
        return int(round(self.context * self.scale))

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Dict[str, Any], *, strict: bool = True) -> "TrainConfig":
        """A config from plain values (config.json, a checkpoint, a child process's JSON).

        ``strict=False`` ignores keys this version does not know, with a warning (a checkpoint written by another
        version); a strict read names them as an error (a user's file).
        """
        if not isinstance(values, dict):
            raise ValueError(f"a training config must be a mapping of settings, got {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown and strict:
            raise ValueError(f"unknown training settings {unknown}")
        if unknown:
            warnings.warn(f"ignoring training settings this version of rensenet does not know: {unknown}",
                          stacklevel=2)
        if "data" not in values:
            raise ValueError("a training config needs 'data'")
        return cls(**{k: v for k, v in values.items() if k in known})
