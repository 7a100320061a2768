"""Training data of a manifest whose images are the model's inputs (windows, or whole slices resized)."""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Dict, Tuple

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, DistributedSampler

from ..base import TrainConfig, auc_score, predict_probs
from ..base.datasets import make_dataset, transforms_for
from ..data import intensity_stats
from .distributed import DistContext


class ImageData:
    """Per-epoch loaders over the training images and the validation score that selects ``best.pt``.

    The score is val AUC; where AUC is undefined on the validation split (a class missing there) it is val
    accuracy, and :attr:`selection_note` says so before training starts.
    """

    def __init__(self, cfg: TrainConfig, train_frame: pd.DataFrame, val_frame: pd.DataFrame) -> None:
        self.train_ds = make_dataset(train_frame, replace(cfg, mean=None), train=True)  # reads every image once
        native = int(max(self.train_ds.load(0)[0].shape))
        cfg = replace(cfg, img_size=cfg.img_size or native, native_size=cfg.native_size or native)
        if cfg.mean is None or cfg.std is None:
            mean, std = intensity_stats(self.train_ds)
            cfg = replace(cfg, mean=[mean] * cfg.in_chans, std=[std] * cfg.in_chans)
        self.cfg = cfg
        self.train_ds.transform = transforms_for(cfg, train=True)
        self.val_ds = make_dataset(val_frame, cfg)
        self.val_loader = DataLoader(self.val_ds, batch_size=max(cfg.batch_size, 64), shuffle=False,
                                     num_workers=cfg.workers)
        val_classes = sorted(set(val_frame["label"].tolist()))
        missing = [cfg.class_names[c] for c in range(int(cfg.num_classes)) if c not in val_classes]
        self.selection = "val_accuracy" if missing else "val_auc"
        self.selection_note = (
            f"the {cfg.val_split!r} split has no image of class(es) {missing}: AUC is undefined there, so best.pt "
            "is selected by val accuracy" if missing else "best.pt is selected by val AUC")

    def __len__(self) -> int:
        return len(self.train_ds)

    def loader(self, epoch: int, ctx: DistContext, per_rank_batch: int) -> DataLoader:
        sampler = self.sampler(ctx)
        sampler.set_epoch(epoch)
        return DataLoader(self.train_ds, batch_size=per_rank_batch, sampler=sampler, num_workers=self.cfg.workers,
                          drop_last=True, generator=torch.Generator().manual_seed(self.cfg.seed * 1000 + epoch))

    def sampler(self, ctx: DistContext) -> DistributedSampler:
        return DistributedSampler(self.train_ds, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                  seed=self.cfg.seed, drop_last=True)

    def validate(self, model: torch.nn.Module, device: torch.device, *, amp: bool) -> Tuple[float, Dict[str, Any]]:
        """(selection score, the epoch's val columns for history.csv)."""
        probs, labels, _ = predict_probs(model, self.val_loader, device, amp=amp)
        record = {"val_auc": auc_score(labels, probs), "val_accuracy": float((probs.argmax(1) == labels).mean())}
        return record[self.selection], record

    def after_epoch(self, model: torch.nn.Module, epoch: int, device: torch.device, *,
                    last: bool = False) -> Dict[str, Any]:
        """Nothing to update between epochs (whole-image training mines hard negatives here)."""
        return {}

    def state(self) -> Dict[str, Any]:
        return {}

    def load_state(self, state: Dict[str, Any]) -> None:
        pass

    @staticmethod
    def labels_of(batch: Dict[str, Any]) -> torch.Tensor:
        return torch.as_tensor(np.asarray(batch["label"]))
