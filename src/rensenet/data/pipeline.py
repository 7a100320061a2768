"""One function that turns a manifest split and a run's settings into a dataset, shared by every command."""
from __future__ import annotations

from typing import Any, Mapping, Tuple

import numpy as np
import pandas as pd

from .dataset import SliceDataset
from .transforms import build_transforms


def transforms_for(settings: Mapping[str, Any], *, train: bool = False):
    """Resize to ``settings["img_size"]``, normalise with ``mean``/``std``; with ``train`` the ``augment`` preset.
    Without ``img_size``/``mean`` (not known yet) there is no transform."""
    if settings.get("img_size") is None or settings.get("mean") is None:
        return None
    size = int(settings["img_size"])
    return build_transforms(
        img_size=(size, size),
        mean=settings["mean"],
        std=settings["std"],
        train=train,
        augment=settings.get("augment", "standard"),
        max_shift=int(settings.get("max_shift", 8)),
    )


def make_dataset(frame: pd.DataFrame, settings: Mapping[str, Any], *, train: bool = False) -> SliceDataset:
    """A :class:`SliceDataset` of ``frame`` with :func:`transforms_for` ``settings``."""
    return SliceDataset(frame, transform=transforms_for(settings, train=train),
                        in_chans=int(settings.get("in_chans", 1)), window=settings.get("window"))


def intensity_stats(dataset: SliceDataset) -> Tuple[float, float]:
    """Mean and standard deviation of the (untransformed) pixels, for normalisation."""
    total = count = sq = 0.0
    for i in range(len(dataset)):
        img = dataset.load(i)[0].astype(np.float64)
        total += img.sum()
        sq += (img ** 2).sum()
        count += img.size
    mean = total / count
    return float(mean), float(max(np.sqrt(sq / count - mean ** 2), 1e-6))
