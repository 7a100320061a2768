"""``rensenet predict``: one class probability per window-sized image, DICOM slice or NIfTI slice."""
from __future__ import annotations

import copy
import warnings
from typing import Sequence

import pandas as pd
import torch
import torch.nn as nn
from torchvision import tv_tensors

from ..base import TrainConfig, batches_of, predict_logits
from ..base.datasets import transforms_for
from ..models.inference import optimize_for_inference
from .inputs import collect_inputs, iter_slices


@torch.no_grad()
def predict_files(model: nn.Module, cfg: TrainConfig, paths: Sequence, *, window=None, allow_modality=(),
                  batch_size: int = 64, device: torch.device = torch.device("cpu")) -> pd.DataFrame:
    """A table of class probabilities for every image, DICOM file or NIfTI slice under ``paths``.

    Each input is resized to the model's input size, which suits inputs of about the training window's size.
    A larger one is resized all the same, with a warning: shrinking a whole slice erases small lesions, and
    ``rensenet scan`` finds them at full resolution instead.
    """
    transform = transforms_for(cfg)
    rows, images, too_large = [], [], []
    for source in collect_inputs(paths, window=window or cfg.window, allow_modality=allow_modality):
        for item in iter_slices(source, in_chans=cfg.in_chans):
            img = torch.from_numpy(item.image)
            if max(img.shape[-2:]) > 1.5 * int(cfg.native_size or cfg.img_size):
                too_large.append(source.name)
            mask = torch.zeros((1, *img.shape[-2:]), dtype=torch.uint8)
            images.append(transform({"image": tv_tensors.Image(img.float()), "mask": tv_tensors.Mask(mask)})["image"])
            rows.append({"path": source.name, "slice": item.index if source.is_volume else ""})
    if too_large:
        warnings.warn(f"{len(too_large)} input(s) (e.g. {too_large[0]}) are much larger than the "
                      f"{cfg.native_size or cfg.img_size}-px windows the model was trained on and were shrunk to "
                      f"{cfg.img_size} px, which erases small lesions; `rensenet scan` scans them at full size",
                      UserWarning, stacklevel=3)  # past torch.no_grad's wrapper, to the caller
    fast = optimize_for_inference(copy.deepcopy(model))  # BN folded, channels-last: same results, faster
    probs = torch.softmax(predict_logits(fast, batches_of(torch.stack(images), batch_size), device), 1).numpy()
    table = pd.DataFrame(rows)
    for c, name in enumerate(cfg.class_names):
        table[f"prob_{name}"] = probs[:, c]
    table["pred"] = [cfg.class_names[c] for c in probs.argmax(1)]
    return table
