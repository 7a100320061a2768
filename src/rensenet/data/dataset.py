"""A map-style dataset of CT slices with their lesion masks, driven by a validated manifest."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import pandas as pd
import torch
from torchvision import tv_tensors

from .manifest import DataError, parse_boxes
from .readers import ImageReadError, read_mask, read_slice


class SliceDataset(torch.utils.data.Dataset):
    """Samples ``{"image", "mask", "label", "has_lesion", "index"}`` for the rows of a manifest.

    ``image`` is a float ``(in_chans, H, W)`` :class:`tv_tensors.Image` in [0, 1] before ``transform`` (a
    grayscale slice repeated when ``in_chans`` > 1); ``mask`` a ``(1, H, W)`` :class:`tv_tensors.Mask` from
    ``mask_path``, else from ``bbox``, else empty, so torchvision v2 transforms move it with the image.
    With ``cache=True`` every image is read once up front, which also finds unreadable files before training.
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        *,
        root: Optional[str] = None,
        transform: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None,
        in_chans: int = 1,
        window: Any = None,
        cache: bool = True,
    ) -> None:
        self.frame = frame.reset_index(drop=True)
        self.root = Path(root or frame.attrs.get("root", "."))
        self.source = frame.attrs.get("source", str(self.root))
        self.transform = transform
        self.in_chans = in_chans
        self.window = window
        self._cache: Optional[list] = None
        if cache:
            self._cache = [self._read(i) for i in range(len(self.frame))]

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def labels(self) -> np.ndarray:
        return self.frame["label"].to_numpy()

    def _where(self, i: int) -> str:
        line = self.frame["_line"].iloc[i] if "_line" in self.frame else i
        return f"{self.source}, line {line}"

    def _read(self, i: int) -> Tuple[np.ndarray, np.ndarray]:
        row = self.frame.iloc[i]
        try:
            image = read_slice(self.root / row["path"], self.window)
            if row["mask_path"]:
                mask = read_mask(self.root / row["mask_path"], image.shape)
            else:
                mask = np.zeros(image.shape, dtype=bool)
                for x0, y0, x1, y1 in parse_boxes(row["bbox"]):
                    mask[max(y0, 0):y1, max(x0, 0):x1] = True
        except (ImageReadError, DataError) as e:
            raise DataError(f"{self._where(i)}: {e}") from None
        if float(image.max()) == float(image.min()):
            raise DataError(f"{self._where(i)}: {row['path']} is blank (every pixel {image.max():.3g}); remove the row")
        return image.astype(np.float32), mask

    def load(self, i: int) -> Tuple[np.ndarray, np.ndarray]:
        """(image (H, W) float, mask (H, W) bool) of row ``i``, untransformed."""
        image, mask = self._cache[i] if self._cache is not None else self._read(i)
        return image, mask

    def __getitem__(self, i: int) -> Dict[str, Any]:
        image, mask = self.load(i)
        img = torch.from_numpy(image)[None].expand(self.in_chans, -1, -1).clone()
        sample = {
            "image": tv_tensors.Image(img),
            "mask": tv_tensors.Mask(torch.from_numpy(mask)[None].to(torch.uint8)),
            "label": int(self.frame["label"].iloc[i]),
            "has_lesion": bool(mask.any()),
            "index": i,
        }
        return self.transform(sample) if self.transform is not None else sample


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
