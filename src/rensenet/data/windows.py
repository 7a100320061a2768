"""Windows sampled on the fly from whole images with lesion boxes: what whole-image training learns from.

A positive window holds one whole lesion, at a random position, ``margin`` pixels from its edge (as the window
tasks were cut); a negative window touches no lesion box grown by ``clearance`` and may come from anywhere in the
image, blank air included. MONAI's ``RandCropByPosNegLabeld`` samples crop *centres* on lesion or background
pixels, which puts every lesion near the centre (not at a random position, and cuts large ones) and lets a
"negative" crop overlap a lesion, so it is not used here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from scipy import ndimage
from torchvision import tv_tensors

from .manifest import parse_boxes


@dataclass(frozen=True)
class Window:
    image: int  # index of the whole image
    y: int  # corner row (may be negative: the image is padded)
    x: int  # corner column
    label: int


def lesion_boxes(bbox: str, mask: Optional[np.ndarray]) -> np.ndarray:
    """(M, 4) boxes x0 y0 x1 y1 (exclusive ends): the manifest's ``bbox``, else the mask's connected components."""
    boxes = parse_boxes(bbox) if bbox else []
    if not boxes and mask is not None and mask.any():
        labels, _ = ndimage.label(mask)
        boxes = [(s[1].start, s[0].start, s[1].stop, s[0].stop) for s in ndimage.find_objects(labels)]
    return np.asarray(boxes, dtype=int).reshape(-1, 4)


def lesion_sizes(boxes: np.ndarray, mask: Optional[np.ndarray]) -> np.ndarray:
    """Pixels of each lesion: its mask inside its box, or the box's area where there is no mask."""
    sizes = []
    for x0, y0, x1, y1 in boxes:
        inside = int(mask[max(y0, 0):y1, max(x0, 0):x1].sum()) if mask is not None else 0
        sizes.append(inside or (x1 - x0) * (y1 - y0))
    return np.asarray(sizes, dtype=float)


class WindowSampler:
    """Positive and negative window corners for images of ``shapes`` with lesion ``boxes``."""

    def __init__(self, shapes: Sequence[Tuple[int, int]], boxes: Sequence[np.ndarray], *, size: int, margin: int = 2,
                 clearance: int = 4) -> None:
        self.shapes, self.boxes, self.size = list(shapes), list(boxes), size
        self.margin, self.clearance = margin, clearance

    def _range(self, i: int, axis: int) -> Tuple[int, int]:
        extent = self.shapes[i][axis]
        return min(0, extent - self.size), max(0, extent - self.size)

    def positive(self, i: int, rng: np.random.Generator) -> Optional[Tuple[int, int]]:
        """The corner of a window holding a random lesion of image ``i`` whole, at a random position."""
        if not len(self.boxes[i]):
            return None
        x0, y0, x1, y1 = self.boxes[i][rng.integers(len(self.boxes[i]))]
        corner = []
        for lo_l, hi_l, axis in ((y0, y1, 0), (x0, x1, 1)):
            lo, hi = self._range(i, axis)
            a, b = max(lo, hi_l + self.margin - self.size), min(hi, lo_l - self.margin)
            corner.append(int(rng.integers(a, b + 1)) if a <= b else int(np.clip((lo_l + hi_l - self.size) // 2, lo, hi)))
        return corner[0], corner[1]

    def is_negative(self, i: int, y: int, x: int) -> bool:
        """The window touches no lesion box of image ``i`` grown by the clearance."""
        c, s = self.clearance, self.size
        for x0, y0, x1, y1 in self.boxes[i]:
            if x < x1 + c and x0 - c < x + s and y < y1 + c and y0 - c < y + s:
                return False
        return True

    def negative(self, i: int, rng: np.random.Generator, tries: int = 50) -> Optional[Tuple[int, int]]:
        """A uniformly random lesion-free window of image ``i``, or None when ``tries`` draws found none."""
        (ylo, yhi), (xlo, xhi) = self._range(i, 0), self._range(i, 1)
        for _ in range(tries):
            y, x = int(rng.integers(ylo, yhi + 1)), int(rng.integers(xlo, xhi + 1))
            if self.is_negative(i, y, x):
                return y, x
        return None

    def epoch(self, rng: np.random.Generator, *, per_image: int, pos_fraction: float,
              hard: Optional[Dict[int, List[Tuple[int, int]]]] = None, hard_fraction: float = 0.0) -> List[Window]:
        """``per_image`` windows of every image: ``pos_fraction`` of them positive where the image has lesions;
        each negative comes from the image's mined hard negatives with probability ``hard_fraction``. A negative
        that an image cannot give (its lesions leave no room) is drawn from another image."""
        hard = hard or {}
        out: List[Window] = []
        n = len(self.shapes)
        for i in range(n):
            n_pos = int(round(per_image * pos_fraction)) if len(self.boxes[i]) else 0
            for _ in range(n_pos):
                y, x = self.positive(i, rng)  # type: ignore[misc]
                out.append(Window(i, y, x, 1))
            for _ in range(per_image - n_pos):
                j, corner = i, None
                if hard.get(i) and rng.random() < hard_fraction:
                    corner = hard[i][rng.integers(len(hard[i]))]
                for _ in range(20):
                    corner = corner or self.negative(j, rng)
                    if corner is not None:
                        break
                    j = int(rng.integers(n))
                if corner is not None:
                    out.append(Window(j, int(corner[0]), int(corner[1]), 0))
        return out


def crop(array: np.ndarray, y: int, x: int, size: int) -> np.ndarray:
    """``array[..., y:y+size, x:x+size]``, padded with zeros (black) where the window leaves the image."""
    h, w = array.shape[-2:]
    out = np.zeros(array.shape[:-2] + (size, size), dtype=array.dtype)
    ys, xs = slice(max(y, 0), min(y + size, h)), slice(max(x, 0), min(x + size, w))
    out[..., ys.start - y:ys.stop - y, xs.start - x:xs.stop - x] = array[..., ys, xs]
    return out


class WindowDataset(torch.utils.data.Dataset):
    """Sample dicts (as :class:`rensenet.data.SliceDataset` gives them) of windows cut from whole images, each with
    ``context`` pixels of the image around it (the sample is ``size + 2 * context`` px; its mask holds the
    positive window's lesions)."""

    def __init__(self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray], windows: Sequence[Window], *,
                 size: int, context: int = 0, in_chans: int = 1,
                 transform: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None):
        self.images, self.masks, self.windows = images, masks, list(windows)
        self.size, self.context, self.in_chans, self.transform = size, context, in_chans, transform

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, k: int) -> Dict[str, Any]:
        w, c = self.windows[k], self.context
        full = self.size + 2 * c
        image = torch.from_numpy(crop(self.images[w.image], w.y - c, w.x - c, full))
        mask = np.zeros((full, full), bool)
        if w.label:
            mask[c:c + self.size, c:c + self.size] = crop(self.masks[w.image], w.y, w.x, self.size)
        sample = {"image": tv_tensors.Image(image[None].expand(self.in_chans, -1, -1).clone()),
                  "mask": tv_tensors.Mask(torch.from_numpy(mask)[None].to(torch.uint8)), "label": w.label,
                  "has_lesion": bool(w.label), "index": k}
        return self.transform(sample) if self.transform is not None else sample
