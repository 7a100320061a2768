"""The whole-image benchmark's anchor: a real detector, to answer "why not just use a detector?" with numbers.

torchvision's FCOS with a ResNet-18 FPN backbone (P3-P7), no pretrained weights (none can be downloaded), batch
norm trained from scratch. It sees the same train images and lesion boxes as the window classifiers, for the same
number of image passes: every train image once per epoch, for the benchmark's epochs. ``best.pt`` is the epoch with
the best val CPM, as for the classifiers. Its candidates are its boxes' centres, scored by the same FROC code
(:func:`rensenet.evaluation.scans.evaluate_scans`); scoring runs in a child process for its peak memory.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..base import TrainConfig
from ..base.froc import cpm, match_image, sensitivity_at
from ..base.io import save_torch, write_csv, write_json
from ..data import SliceDataset, intensity_stats, read_manifest, select_split
from ..data.windows import lesion_boxes
from ..evaluation.scans import DEFAULT_TOLERANCE, evaluate_scans

#: Candidates kept per image, and the lowest score kept: FROC reads the curve up to 8 false positives per image.
DETECTIONS_PER_IMAGE = 32
SCORE_FLOOR = 0.01


def build_detector(*, backbone: str = "resnet18", short_side: int, long_side: int, img_scale: float = 1.0,
                   mean: float = 0.5, std: float = 0.25) -> nn.Module:
    """FCOS with a ``backbone`` FPN, one lesion class, resizing each image by ``img_scale`` (its native size at 1;
    boxes come back in the image's own pixels)."""
    from torchvision.models.detection import FCOS
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    trunk = resnet_fpn_backbone(backbone_name=backbone, weights=None, norm_layer=nn.BatchNorm2d, trainable_layers=5,
                                returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(256, 256))
    return FCOS(trunk, num_classes=2, min_size=int(round(short_side * img_scale)),
                max_size=int(round(long_side * img_scale)), image_mean=[mean] * 3, image_std=[std] * 3,
                score_thresh=SCORE_FLOOR, detections_per_img=DETECTIONS_PER_IMAGE)


class BoxImages:
    """The images of one manifest split as FCOS inputs (3 x H x W in [0, 1]) with their lesion boxes."""

    def __init__(self, frame: pd.DataFrame) -> None:
        data = SliceDataset(frame)
        self.frame, self.dataset = frame.reset_index(drop=True), data
        self.images = [torch.from_numpy(np.asarray(data.load(i)[0], np.float32)) for i in range(len(data))]
        self.boxes = [lesion_boxes(b, data.load(i)[1]) for i, b in enumerate(self.frame["bbox"])]
        self.paths = [str(Path(frame.attrs["root"]) / p) for p in self.frame["path"]]

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, i: int, rng: np.random.Generator) -> tuple:
        """Image i and its target, flipped left-right and up-down at random (the classifiers' flips)."""
        image, boxes = self.images[i], torch.as_tensor(self.boxes[i], dtype=torch.float32).reshape(-1, 4)
        h, w = image.shape
        if rng.random() < 0.5:
            image, boxes = image.flip(1), boxes[:, [2, 1, 0, 3]] * torch.tensor([-1, 1, -1, 1]) + torch.tensor([w, 0, w, 0])
        if rng.random() < 0.5:
            image, boxes = image.flip(0), boxes[:, [0, 3, 2, 1]] * torch.tensor([1, -1, 1, -1]) + torch.tensor([0, h, 0, h])
        return image[None].repeat(3, 1, 1), {"boxes": boxes, "labels": torch.ones(len(boxes), dtype=torch.int64)}


@torch.no_grad()
def detect(model: nn.Module, images: BoxImages, *, batch_size: int = 4) -> pd.DataFrame:
    """candidates.csv of ``rensenet scan`` for every image: path, slice, x, y (the box centre), score, size_px."""
    model.eval()
    rows: List[Dict[str, Any]] = []
    for start in range(0, len(images), batch_size):
        batch = [im[None].repeat(3, 1, 1) for im in images.images[start:start + batch_size]]
        for k, found in enumerate(model(batch)):
            for (x0, y0, x1, y1), score in zip(found["boxes"].tolist(), found["scores"].tolist()):
                # box edges are continuous (pixel i spans i .. i + 1); a candidate is a pixel index
                rows.append({"path": images.paths[start + k], "slice": 0, "x": (x0 + x1 - 1) / 2, "y": (y0 + y1 - 1) / 2,
                             "score": score, "size_px": max(x1 - x0, y1 - y0)})
    return pd.DataFrame(rows, columns=["path", "slice", "x", "y", "score", "size_px"])


def val_cpm(model: nn.Module, images: BoxImages) -> Dict[str, float]:
    """The selection score: CPM of ``detect`` on the images (the training's val CPM, same tolerance)."""
    found = detect(model, images)
    matches = [match_image(found.loc[found["path"] == p, ["x", "y", "score"]].to_numpy(float), boxes,
                           tolerance=DEFAULT_TOLERANCE) for p, boxes in zip(images.paths, images.boxes)]
    return {"val_cpm": cpm(matches), "val_sens_at_1fp": sensitivity_at(matches, (1.0,))[1.0]}


def train_detector(data: str | Path, *, out: str | Path, epochs: int, seed: int, lr: float = 1e-3,
                   batch_size: int = 4, img_scale: float = 1.0, backbone: str = "resnet18",
                   progress: bool = False) -> Dict[str, Any]:
    """Train FCOS on the train split of ``data`` (AdamW, 1 warm-up epoch, cosine per step: ``rensenet train``'s
    optimizer and schedule); write ``out``/best.pt, history.csv and config.json; (train seconds, best val CPM)."""
    from ..training.optim import make_optimizer, make_scheduler

    out = Path(out)
    manifest = read_manifest(data)
    train, val = BoxImages(select_split(manifest, "train")), BoxImages(select_split(manifest, "val"))
    mean, std = intensity_stats(train.dataset)
    h, w = train.images[0].shape
    spec = dict(backbone=backbone, short_side=min(h, w), long_side=max(h, w), img_scale=img_scale, mean=mean, std=std)
    torch.manual_seed(seed)
    model = build_detector(**spec)
    cfg = TrainConfig(data=str(data), model=f"fcos_{backbone}_fpn", out=str(out), epochs=epochs, lr=lr,
                      batch_size=batch_size, optimizer="adamw", warmup_epochs=1.0, seed=seed)
    steps = len(train) // batch_size
    optimizer = make_optimizer(cfg, model)
    schedule = make_scheduler(cfg, optimizer, steps)
    rng = np.random.default_rng(seed)
    history, best, start, update = [], -1.0, time.time(), 0
    for epoch in range(epochs):
        model.train()
        order, losses = rng.permutation(len(train)), []
        for s in range(steps):
            images, targets = zip(*(train.sample(int(i), rng) for i in order[s * batch_size:(s + 1) * batch_size]))
            loss = sum(model(list(images), list(targets)).values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 10.0)  # from scratch, the first steps' boxes are wild
            optimizer.step()
            update += 1
            schedule.step_update(update)
            losses.append(float(loss.detach()))
        row = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), **val_cpm(model, val)}
        history.append(row)
        if progress:
            print(f"  fcos epoch {epoch + 1}/{epochs}: loss {row['train_loss']:.3f}, val CPM {row['val_cpm']:.3f}",
                  file=sys.stderr, flush=True)
        if row["val_cpm"] > best:
            best = row["val_cpm"]
            save_torch(out / "best.pt", {"spec": spec, "state_dict": model.state_dict(), "epoch": epoch + 1})
        write_csv(out / "history.csv", pd.DataFrame(history))
    seconds = time.time() - start
    write_json(out / "config.json", {**asdict(cfg), "detector": spec, "train_seconds": seconds})
    return {"train_seconds": round(seconds, 1), "best_val_cpm": best}


def load_detector(path: str | Path) -> nn.Module:
    """best.pt of :func:`train_detector` (tensors and plain numbers only: read with ``weights_only``)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = build_detector(**state["spec"])
    model.load_state_dict(state["state_dict"])
    return model.eval()


def score_detector(checkpoint: str | Path, data: str | Path, *, split: str, out: str | Path,
                   n_boot: int = 1000) -> Dict[str, Any]:
    """What ``rensenet scan --data`` writes for a classifier: candidates.csv, images.csv (seconds per slice),
    froc.json; the FROC returned."""
    out = Path(out)
    model = load_detector(checkpoint)
    images = BoxImages(select_split(read_manifest(data), split))
    start = time.perf_counter()
    found = detect(model, images, batch_size=1)  # one slice at a time, as scan streams them
    seconds = (time.perf_counter() - start) / max(len(images), 1)
    write_csv(out / "candidates.csv", found)
    top = found.groupby("path")["score"].max() if len(found) else pd.Series(dtype=float)
    write_csv(out / "images.csv", pd.DataFrame({"path": images.paths, "score": [top.get(p, 0.0) for p in images.paths],
                                                "seconds_per_slice": seconds}))
    return evaluate_scans(found, data, split=split, out=out, n_boot=n_boot)


def slice_gflops(checkpoint: str | Path, data: str | Path, split: str = "test") -> float:
    """GFLOPs of the detector on the first image of ``split``."""
    from .cost import gflops_of

    model = load_detector(checkpoint)
    image = BoxImages(select_split(read_manifest(data), split).iloc[:1]).images[0]
    return gflops_of(lambda: model([image[None].repeat(3, 1, 1)]))


def anchor_options(spec: Dict[str, Any]) -> Dict[str, Any]:
    """The training options of a config entry ``{model: resnet18, detector: fcos, lr: ..., img_scale: ...}``."""
    if spec.get("detector") != "fcos":
        raise ValueError(f"detector {spec.get('detector')!r}: the anchor is torchvision's FCOS (detector: fcos)")
    return dict(backbone=spec["model"], lr=float(spec.get("lr", 1e-3)), img_scale=float(spec.get("img_scale", 1)),
                batch_size=int(spec.get("batch_size", 4)))


def anchor_seed(cfg, task: str, name: str, seed: int, *, out: Path) -> Dict[str, Any]:
    """Train (unless done) and score one seed of the anchor; its record, with the classifiers' fields."""
    from .processes import run_child
    from .scan_units import scan_fields

    data = Path(cfg.data_root) / task
    options = anchor_options(cfg.models[name])
    run = out / "run"
    config = run / "config.json"
    if config.exists() and (run / "best.pt").exists():
        timing = {"train_seconds": json.loads(config.read_text())["train_seconds"]}
    else:
        timing = train_detector(data, out=run, epochs=cfg.epochs, seed=seed, **options)
    scan_out = out / "scan"
    seconds, peak_mb = run_child([sys.executable, "-m", "rensenet.benchmark.anchor", str(run / "best.pt"), str(data),
                                  "test", str(scan_out), str(cfg.n_boot)], out / "scan.log")
    return {
        "task": task, "model": name, "seed": seed, **scan_fields(scan_out, seconds=seconds, peak_mb=peak_mb),
        "gflops_per_slice": slice_gflops(run / "best.pt", data), "lr": options["lr"], "epochs": cfg.epochs,
        "detector": "fcos", "image_passes": cfg.epochs * len(select_split(read_manifest(data), "train")),
        **timing, "run": str(run), "train_options": options,
    }


if __name__ == "__main__":  # the scoring child: CHECKPOINT DATA SPLIT OUT N_BOOT
    ckpt, data_arg, split_arg, out_arg, boot = sys.argv[1:6]
    score_detector(ckpt, data_arg, split=split_arg, out=out_arg, n_boot=int(boot))
