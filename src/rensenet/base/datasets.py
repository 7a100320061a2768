"""One place that turns a manifest split and a run's typed config into a dataset, for every command."""
from __future__ import annotations

from typing import Optional

import pandas as pd

from ..data.dataset import SliceDataset
from ..data.transforms import build_transforms
from .config import TrainConfig


def transforms_for(cfg: TrainConfig, *, train: bool = False, size: Optional[int] = None, shift: bool = True):
    """Resize to ``size`` (default ``cfg.img_size``) and normalise with ``cfg.mean``/``cfg.std``; with ``train``,
    the ``augment`` preset first (without its lesion-safe shift if not ``shift``). None while the size or the
    normalisation is not known yet (before training has read the data)."""
    if cfg.img_size is None or cfg.mean is None or cfg.std is None:
        return None
    size = int(size or cfg.img_size)
    return build_transforms(img_size=(size, size), mean=cfg.mean, std=cfg.std, train=train, augment=cfg.augment,
                            max_shift=cfg.max_shift if shift else 0)


def make_dataset(frame: pd.DataFrame, cfg: TrainConfig, *, train: bool = False, cache: bool = True) -> SliceDataset:
    """A :class:`SliceDataset` of ``frame`` read with ``cfg``'s channels and window, transformed by :func:`transforms_for`."""
    return SliceDataset(frame, transform=transforms_for(cfg, train=train), in_chans=cfg.in_chans,
                        window=cfg.window, cache=cache)
