"""Composable transforms on sample dicts; torchvision v2 moves the lesion mask with the image.

Only what torchvision lacks is written here: a padded random crop that never pushes a lesion out of view.
"""
from __future__ import annotations

from typing import Any, Dict, Sequence, Tuple

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

AUGMENTATIONS = ("none", "flip", "shift", "standard", "strong")


class LesionSafeShift:
    """Padded random crop (the prototype's 8-px padding) whose offset keeps every lesion pixel in view.

    The image is padded by ``max_shift`` on each side (edge replication, so no artificial black frame appears
    in CT windows) and cropped back to its size at a random offset; for images with a lesion mask the offset is
    limited so the lesion's bounding box stays inside the crop.
    """

    def __init__(self, max_shift: int = 8) -> None:
        if max_shift < 0:
            raise ValueError(f"max_shift must be >= 0, got {max_shift}")
        self.max_shift = max_shift

    def __call__(self, sample: Dict[str, Any]) -> Dict[str, Any]:
        s = self.max_shift
        if s == 0:
            return sample
        image, mask = sample["image"], sample["mask"]
        h, w = image.shape[-2:]
        # crop starts at (dy, dx) in the padded image; original pixel (y, x) lands at y + s - dy.
        lo_y, hi_y, lo_x, hi_x = 0, 2 * s, 0, 2 * s
        ys, xs = torch.nonzero(mask[0], as_tuple=True)
        if len(ys):
            lo_y, hi_y = max(lo_y, int(ys.max()) + s - h + 1), min(hi_y, int(ys.min()) + s)
            lo_x, hi_x = max(lo_x, int(xs.max()) + s - w + 1), min(hi_x, int(xs.min()) + s)
        dy = int(torch.randint(lo_y, hi_y + 1, ()))
        dx = int(torch.randint(lo_x, hi_x + 1, ()))
        padded = F.pad(image.as_subclass(torch.Tensor)[None], (s, s, s, s), mode="replicate")[0]
        padded_mask = F.pad(mask.as_subclass(torch.Tensor), (s, s, s, s))
        out = dict(sample)
        out["image"] = type(image)(padded[:, dy:dy + h, dx:dx + w])
        out["mask"] = type(mask)(padded_mask[:, dy:dy + h, dx:dx + w])
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_shift={self.max_shift})"


class ToModelInput:
    """Plain float tensors for the collate function: image (C, H, W), mask (1, H, W) bool."""

    def __call__(self, sample: Dict[str, Any]) -> Dict[str, Any]:
        out = dict(sample)
        out["image"] = sample["image"].as_subclass(torch.Tensor).float().contiguous()
        out["mask"] = sample["mask"].as_subclass(torch.Tensor).bool()
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def build_transforms(
    *,
    img_size: Tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    train: bool = False,
    augment: str = "standard",
    max_shift: int = 8,
) -> v2.Compose:
    """The pipeline: [augment] -> resize to ``img_size`` -> normalise -> plain tensors.

    ``augment`` (training only): ``none``; ``flip`` (horizontal); ``shift`` (lesion-safe padded crop);
    ``standard`` (flip + shift, the prototype's recipe); ``strong`` (standard + vertical flip + a small
    affine: +-10 degrees, scale 0.9-1.1).
    """
    if augment not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {augment!r}: choose one of {AUGMENTATIONS}")
    steps: list = []
    if train:
        if augment in ("shift", "standard", "strong"):
            steps.append(LesionSafeShift(max_shift))
        if augment in ("flip", "standard", "strong"):
            steps.append(v2.RandomHorizontalFlip())
        if augment == "strong":
            steps += [v2.RandomVerticalFlip(), v2.RandomAffine(degrees=10, scale=(0.9, 1.1))]
    steps += [
        v2.Resize(list(img_size), antialias=True),
        v2.Normalize(mean=list(mean), std=list(std)),
        ToModelInput(),
    ]
    return v2.Compose(steps)
