"""Training data of a manifest of whole images with lesion boxes or masks (``rensenet train --patch-size N``).

Each epoch samples new windows (:class:`rensenet.data.windows.WindowSampler`); after each epoch, with
``--hard-negatives K``, the training images are scanned densely and the K highest-scoring false-positive windows of
each image (probability >= 0.5, touching no lesion) join its negatives. ``best.pt`` is selected by the validation
CPM: the FROC of whole-image scans of the validation images, with the candidates ``rensenet scan`` finds
(CAM-refined map peaks, at the mining stride).
"""
from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any, Dict, List, Tuple

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, DistributedSampler

from ..base import TrainConfig
from ..base.datasets import transforms_for
from ..base.froc import cpm, match_image, sensitivity_at
from ..base.windows import WindowScorer, find_peaks
from ..data import SliceDataset, intensity_stats
from ..data.windows import WindowDataset, WindowSampler, lesion_boxes
from ..models.inference import optimize_for_inference
from .distributed import DistContext

#: Pixels a candidate may lie outside a lesion's box and still detect it (as ``rensenet evaluate-scans``).
VAL_TOLERANCE = 4.0
#: A mined window is a false positive when the model gives it at least this probability.
FP_PROBABILITY = 0.5


class WindowData:
    """Per-epoch windows of the training images, hard negatives, and the validation CPM."""

    def __init__(self, cfg: TrainConfig, train_frame: pd.DataFrame, val_frame: pd.DataFrame) -> None:
        train = SliceDataset(train_frame, window=cfg.window)
        self.images: List[np.ndarray] = []
        self.masks: List[np.ndarray] = []
        for i in range(len(train)):
            image, mask = train.load(i)
            self.images.append(image)
            self.masks.append(mask)
        boxes = [lesion_boxes(b, m) for b, m in zip(train_frame["bbox"], self.masks)]
        if not any(len(b) for b in boxes):
            raise ValueError(f"{cfg.data}: no lesion box or mask in the {cfg.train_split!r} split; whole-image "
                             "training (--patch-size) samples its positives around the lesions in bbox/mask_path")
        self.sampler_ = WindowSampler([im.shape for im in self.images], boxes, size=int(cfg.patch_size),
                                      margin=cfg.lesion_margin, clearance=cfg.clearance)
        if cfg.mean is None or cfg.std is None:
            mean, std = intensity_stats(train)
            cfg = replace(cfg, mean=[mean] * cfg.in_chans, std=[std] * cfg.in_chans)
        self.cfg = cfg = replace(cfg, img_size=cfg.img_size or cfg.patch_size, native_size=cfg.patch_size)
        # the model sees each window with its context: a lesion-safe shift would move a lesion out of the window
        # (the sampler already puts lesions anywhere in it); flips keep the window in the middle
        crop = int(cfg.img_size) + 2 * cfg.model_context
        self.transform = transforms_for(cfg, train=True, size=crop, shift=not cfg.context)
        val = SliceDataset(val_frame, window=cfg.window)
        self.val_images = [val.load(i)[0] for i in range(len(val))]
        self.val_boxes = [lesion_boxes(b, val.load(i)[1]) for i, b in enumerate(val_frame["bbox"])]
        self.hard: Dict[int, List[Tuple[int, int]]] = {}
        self.selection = "val_cpm"
        self.selection_note = (f"training on {cfg.patch_size}-px windows of {len(self.images)} whole images; best.pt "
                               f"is selected by val CPM (FROC of dense scans of the {len(self.val_images)} "
                               f"{cfg.val_split!r} images at stride {cfg.mining_stride})"
                               + (f"; each window seen with {cfg.context} px of context" if cfg.context else ""))

    def __len__(self) -> int:
        return len(self.images) * self.cfg.windows_per_image

    def sampler(self, ctx: DistContext, dataset=None) -> DistributedSampler:
        return DistributedSampler(dataset if dataset is not None else range(len(self)), num_replicas=ctx.world_size,
                                  rank=ctx.rank, shuffle=True, seed=self.cfg.seed, drop_last=True)

    def loader(self, epoch: int, ctx: DistContext, per_rank_batch: int) -> DataLoader:
        rng = np.random.default_rng([self.cfg.seed, epoch])
        windows = self.sampler_.epoch(rng, per_image=self.cfg.windows_per_image, pos_fraction=self.cfg.pos_fraction,
                                      hard=self.hard, hard_fraction=self.cfg.hard_fraction)
        while len(windows) < len(self):  # a negative no image could give: repeat a window, the epoch keeps its length
            windows.append(windows[int(rng.integers(len(windows)))])
        dataset = WindowDataset(self.images, self.masks, windows, size=int(self.cfg.patch_size),
                                context=self.cfg.context, in_chans=self.cfg.in_chans, transform=self.transform)
        sampler = self.sampler(ctx, dataset)
        sampler.set_epoch(epoch)
        return DataLoader(dataset, batch_size=per_rank_batch, sampler=sampler, num_workers=self.cfg.workers,
                          drop_last=True, generator=torch.Generator().manual_seed(self.cfg.seed * 1000 + epoch))

    def _scorer(self, model: torch.nn.Module, device: torch.device) -> WindowScorer:
        """A scorer on a BN-folded copy of the model (same scores, about 1.5x faster; the model keeps training)."""
        fast = optimize_for_inference(copy.deepcopy(model).eval())
        return WindowScorer(fast, self.cfg, stride=self.cfg.mining_stride, device=device)

    def validate(self, model: torch.nn.Module, device: torch.device, *, amp: bool) -> Tuple[float, Dict[str, Any]]:
        scorer = self._scorer(model, device)
        matches = []
        for image, boxes in zip(self.val_images, self.val_boxes):
            _, _, found = scorer.candidates(image[None].repeat(self.cfg.in_chans, 0))
            matches.append(match_image([(c.x, c.y, c.score) for c in found], boxes, tolerance=VAL_TOLERANCE))
        score = cpm(matches)
        return score, {"val_cpm": score, "val_sens_at_1fp": sensitivity_at(matches, (1.0,))[1.0]}

    @torch.no_grad()
    def after_epoch(self, model: torch.nn.Module, epoch: int, device: torch.device, *,
                    last: bool = False) -> Dict[str, Any]:
        """Scan every training image and add its ``hard_negatives`` highest-scoring false-positive windows; not
        after the ``last`` epoch, whose windows no epoch would sample (a scan of every image, for nothing)."""
        k = self.cfg.hard_negatives
        if not k:
            return {}
        if last:
            return {"hard_negatives": sum(len(v) for v in self.hard.values()), "mined": 0}
        scorer = self._scorer(model, device)
        added = 0
        for i, image in enumerate(self.images):
            wmap = scorer(image[None].repeat(self.cfg.in_chans, 0))
            radius = wmap.window / wmap.stride / 2  # grid cells: mined windows overlap by at most half
            found = []
            for p in find_peaks(wmap.probs, radius=radius, threshold=FP_PROBABILITY, max_peaks=4 * k):
                y, x = (int(round(v)) for v in wmap.corner(p.y, p.x))
                if self.sampler_.is_negative(i, y, x):
                    found.append((y, x))
                if len(found) == k:
                    break
            pool = self.hard.setdefault(i, [])
            new = [c for c in found if c not in pool]
            pool.extend(new)
            added += len(new)
        return {"hard_negatives": sum(len(v) for v in self.hard.values()), "mined": added}

    def state(self) -> Dict[str, Any]:
        return {"hard": [[i, y, x] for i, corners in sorted(self.hard.items()) for y, x in corners]}

    def load_state(self, state: Dict[str, Any]) -> None:
        self.hard = {}
        for i, y, x in state.get("hard", []):
            self.hard.setdefault(int(i), []).append((int(y), int(x)))
