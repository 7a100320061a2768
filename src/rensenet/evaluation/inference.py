"""Batched inference that returns class probabilities in dataset order."""
from __future__ import annotations

import copy
from typing import Iterable, Tuple

import numpy as np
import torch
import torch.nn as nn

from ..models.inference import optimize_for_inference


@torch.no_grad()
def predict_probs(
    model: nn.Module, loader: Iterable, device: torch.device, *, amp: bool = False
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(probabilities (N, C), labels (N,), dataset indices (N,)) over a loader of sample dicts."""
    was_training = model.training
    model.eval()
    probs, labels, indices = [], [], []
    for batch in loader:
        x = batch["image"].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        probs.append(torch.softmax(logits.float(), dim=1).cpu())
        labels.append(torch.as_tensor(batch["label"]))
        indices.append(torch.as_tensor(batch["index"]))
    model.train(was_training)
    return torch.cat(probs).numpy(), torch.cat(labels).numpy(), torch.cat(indices).numpy()


def collect_inputs(paths) -> list:
    """Files to predict on: files as given, folders searched recursively for images, DICOM and NIfTI."""
    from pathlib import Path

    from ..data.readers import DICOM_SUFFIXES, IMAGE_SUFFIXES, NIFTI_SUFFIXES, ImageReadError

    found = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(f for f in p.rglob("*") if f.is_file() and str(f).lower().endswith(
                IMAGE_SUFFIXES + DICOM_SUFFIXES + NIFTI_SUFFIXES))
        elif p.is_file():
            found.append(p)
        else:
            raise ImageReadError(f"{p}: no such file or folder")
    if not found:
        raise ImageReadError(f"no images, DICOM or NIfTI files found in {list(map(str, paths))}")
    return found


@torch.no_grad()
def predict_files(model: nn.Module, settings: dict, paths, *, window=None, batch_size: int = 64,
                  device: torch.device = torch.device("cpu")):
    """A DataFrame of class probabilities for every image, DICOM file or NIfTI slice under ``paths``.

    NIfTI volumes are read as axial slices; a 3-channel model gets each slice with its neighbours (2.5D).
    ``window`` overrides the training run's CT window for DICOM/NIfTI.
    """
    import pandas as pd
    from torchvision import tv_tensors

    from ..data.readers import file_kind, read_nifti, read_slice
    from ..data.transforms import build_transforms

    window = window if window is not None else (settings.get("window") or "abdomen")
    in_chans, size = int(settings["in_chans"]), int(settings["img_size"])
    transform = build_transforms(img_size=(size, size), mean=settings["mean"], std=settings["std"], train=False)
    names = settings["class_names"]

    def prepare(img: torch.Tensor) -> torch.Tensor:  # (C, H, W) in [0, 1] -> the model's input
        img = img if img.shape[0] == in_chans else img[:1].expand(in_chans, -1, -1)
        mask = torch.zeros((1, *img.shape[1:]), dtype=torch.uint8)
        return transform({"image": tv_tensors.Image(img.float()), "mask": tv_tensors.Mask(mask)})["image"]

    rows, images = [], []
    for path in collect_inputs(paths):
        if file_kind(path) == "nifti":
            context = (in_chans - 1) // 2 if in_chans > 1 else 0
            slices = read_nifti(path, window, context=context)
            for z in range(slices.shape[0]):
                images.append(prepare(torch.from_numpy(slices[z])))
                rows.append({"path": str(path), "slice": z})
        else:
            images.append(prepare(torch.from_numpy(read_slice(path, window))[None]))
            rows.append({"path": str(path), "slice": ""})
    model = optimize_for_inference(copy.deepcopy(model))  # BN folded, channels-last: same results, faster
    with torch.inference_mode():
        probs = [torch.softmax(model(torch.stack(images[i:i + batch_size]).to(device)).float(), 1).cpu()
                 for i in range(0, len(images), batch_size)]  # convolutions take NCHW input into NHWC weights
    p = torch.cat(probs).numpy()
    table = pd.DataFrame(rows)
    for c, name in enumerate(names):
        table[f"prob_{name}"] = p[:, c]
    table["pred"] = [names[c] for c in p.argmax(1)]
    return table
