"""The training loop: paper recipe, three-head loss for RenseNet, resumable, distributed with torchrun."""
from __future__ import annotations

import math
import random
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from ..data import class_names, read_manifest, select_split
from ..data.pipeline import intensity_stats, make_dataset, transforms_for
from ..evaluation import auc_score, predict_probs
from ..io import write_csv, write_json
from ..models import RenseNetLoss
from . import distributed
from .checkpoint import create_model, load_checkpoint, save_checkpoint
from .config import TrainConfig


@dataclass
class TrainResult:
    out: Path
    best_epoch: int
    best_val_auc: float
    history: List[Dict[str, Any]]


class HeadsForward(nn.Module):
    """Makes ``forward`` return every head, so DistributedDataParallel sees the call that the loss needs."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        return self.model.forward_heads(x)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _lr_lambda(cfg: TrainConfig, steps_per_epoch: int):
    total = cfg.epochs * steps_per_epoch
    warmup = int(cfg.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if cfg.scheduler == "constant":
            return 1.0
        progress = (step - warmup) / max(total - warmup, 1)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def _make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)  # no weight decay on norms and biases
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=False)


def _resume_config(cfg: TrainConfig, out: Path) -> Dict[str, Any]:
    """The interrupted run's checkpoint, after checking the new command asks for the same run."""
    ckpt = load_checkpoint(out / "last.pt")
    saved = ckpt["config"]
    mine = cfg.to_dict()
    derived = ("num_classes", "class_names", "mean", "std", "img_size")
    changed = [k for k in mine if k not in TrainConfig.RESUMABLE_CHANGES and k not in derived
               and mine[k] != saved.get(k) and not (isinstance(saved.get(k), list) and tuple(saved[k]) == mine[k])]
    if changed:
        raise ValueError(f"{out}: --resume with different settings {changed} than the interrupted run; "
                         "use the same command (only --epochs and --early-stopping may change) or a new --out")
    return ckpt


def train(cfg: TrainConfig) -> TrainResult:
    """Train ``cfg.model`` on ``cfg.data``; writes config.json, history.csv, last.pt and best.pt to ``cfg.out``."""
    ctx = distributed.setup(cfg.device)
    try:
        return _train(cfg, ctx)
    finally:
        distributed.cleanup(ctx)


def _train(cfg: TrainConfig, ctx: distributed.DistContext) -> TrainResult:
    out = Path(cfg.out)
    resume_ckpt: Optional[Dict[str, Any]] = None
    if (out / "last.pt").exists():
        if not cfg.resume:
            raise FileExistsError(f"{out} already holds a run (last.pt); pass --resume to continue it or choose "
                                  "another --out")
        resume_ckpt = _resume_config(cfg, out)
    log = print if ctx.is_main else (lambda *a, **k: None)

    frame = read_manifest(cfg.data)
    train_frame, val_frame = select_split(frame, cfg.train_split), select_split(frame, cfg.val_split)
    names = class_names(frame)
    cfg = replace(cfg, num_classes=len(names), class_names=names)
    train_ds = make_dataset(train_frame, {**cfg.to_dict(), "mean": None}, train=True)  # reads every image once
    if cfg.img_size is None:
        cfg = replace(cfg, img_size=int(max(train_ds.load(0)[0].shape)))
    if cfg.mean is None or cfg.std is None:
        mean, std = intensity_stats(train_ds)
        cfg = replace(cfg, mean=[mean] * cfg.in_chans, std=[std] * cfg.in_chans)
    settings = cfg.to_dict()
    train_ds.transform = transforms_for(settings, train=True)
    val_ds = make_dataset(val_frame, settings)
    if len(train_ds) < cfg.batch_size:
        raise ValueError(f"{cfg.data}: the {cfg.train_split!r} split has {len(train_ds)} images, fewer than "
                         f"--batch-size {cfg.batch_size}")
    if cfg.batch_size % ctx.world_size:
        raise ValueError(f"--batch-size {cfg.batch_size} must divide evenly among {ctx.world_size} processes")

    seed_everything(cfg.seed)
    model = create_model(cfg.model, num_classes=cfg.num_classes, in_chans=cfg.in_chans,
                         model_kwargs=cfg.model_kwargs).to(ctx.device)
    memory_format = torch.channels_last if cfg.channels_last and cfg.model_kwargs.get("spatial_dims", 2) == 2 \
        else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    multi_head = hasattr(model, "forward_heads")
    criterion = RenseNetLoss(backbone=cfg.head_weights[0], ecm=cfg.head_weights[1], fused=cfg.head_weights[2],
                             label_smoothing=cfg.label_smoothing)
    step_module: nn.Module = HeadsForward(model) if multi_head else model
    if ctx.distributed:
        step_module = DistributedDataParallel(step_module, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
    sampler = DistributedSampler(train_ds, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                 seed=cfg.seed, drop_last=True)
    per_rank_batch = cfg.batch_size // ctx.world_size
    steps_per_epoch = len(sampler) // per_rank_batch
    optimizer = _make_optimizer(cfg, model)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg, steps_per_epoch))
    amp = cfg.amp if cfg.amp is not None else ctx.device.type == "cuda"
    amp_dtype = torch.bfloat16 if (ctx.device.type != "cuda" or torch.cuda.is_bf16_supported()) else torch.float16
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=amp and amp_dtype == torch.float16)
    val_loader = DataLoader(val_ds, batch_size=max(cfg.batch_size, 64), shuffle=False, num_workers=cfg.workers)

    history: List[Dict[str, Any]] = []
    start_epoch, best_auc, best_epoch, stale = 0, -math.inf, -1, 0
    if resume_ckpt is not None:
        model.load_state_dict(resume_ckpt["state_dict"])
        optimizer.load_state_dict(resume_ckpt["optimizer"])
        scheduler.load_state_dict(resume_ckpt["scheduler"])
        scaler.load_state_dict(resume_ckpt["scaler"])
        history = resume_ckpt["history"]
        start_epoch = resume_ckpt["epoch"] + 1
        best_auc, best_epoch, stale = resume_ckpt["best_val_auc"], resume_ckpt["best_epoch"], resume_ckpt["stale"]
        log(f"resuming {out} at epoch {start_epoch + 1}/{cfg.epochs}")
    if ctx.is_main:
        write_json(out / "config.json", {k: v for k, v in settings.items()})

    for epoch in range(start_epoch, cfg.epochs):
        if cfg.early_stopping and stale >= cfg.early_stopping:
            log(f"early stopping: no better val AUC for {stale} epochs")
            break
        # each epoch's randomness depends only on (seed, epoch, rank): a resumed run repeats it exactly
        seed_everything(cfg.seed * 1000 + epoch * ctx.world_size + ctx.rank)
        sampler.set_epoch(epoch)
        loader = DataLoader(train_ds, batch_size=per_rank_batch, sampler=sampler, num_workers=cfg.workers,
                            drop_last=True, persistent_workers=False,
                            generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch))
        model.train()
        t0, loss_sum, n_seen = time.time(), 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, file=sys.stderr,
                   disable=None if (ctx.is_main and cfg.progress) else True)  # None: off when not a terminal
        for batch in bar:
            x = batch["image"].to(ctx.device, non_blocking=True).contiguous(memory_format=memory_format)
            y = torch.as_tensor(batch["label"]).to(ctx.device)
            with torch.autocast(ctx.device.type, dtype=amp_dtype, enabled=amp):
                loss = criterion(step_module(x), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"training loss is {loss.item()} at epoch {epoch + 1}; lower --lr")
            loss_sum += loss.item() * len(y)
            n_seen += len(y)
            bar.set_postfix(loss=f"{loss_sum / n_seen:.4f}")
        train_seconds = time.time() - t0

        record: Dict[str, Any] = {}
        if ctx.is_main:
            probs, labels, _ = predict_probs(model, val_loader, ctx.device, amp=amp)
            val_auc = auc_score(labels, probs)
            score = val_auc if not math.isnan(val_auc) else float((probs.argmax(1) == labels).mean())
            improved = score > best_auc
            if improved:
                best_auc, best_epoch, stale = score, epoch, 0
            else:
                stale += 1
            record = {"epoch": epoch + 1, "train_loss": loss_sum / max(n_seen, 1), "val_auc": val_auc,
                      "val_accuracy": float((probs.argmax(1) == labels).mean()),
                      "lr": optimizer.param_groups[0]["lr"], "seconds": round(train_seconds, 2)}
            history.append(record)
            meta = dict(epoch=epoch, val_auc=val_auc, class_names=names)
            if improved:
                save_checkpoint(out / "best.pt", model, settings, **meta)
            save_checkpoint(out / "last.pt", model, settings, **meta, optimizer=optimizer.state_dict(),
                            scheduler=scheduler.state_dict(), scaler=scaler.state_dict(), history=history,
                            best_val_auc=best_auc, best_epoch=best_epoch, stale=stale)
            write_csv(out / "history.csv", pd.DataFrame(history))
            log(f"epoch {epoch + 1}/{cfg.epochs}  train_loss {record['train_loss']:.4f}  val_auc {val_auc:.4f}  "
                f"val_acc {record['val_accuracy']:.4f}  lr {record['lr']:.2e}  {train_seconds:.0f}s"
                + ("  *best" if improved else ""), flush=True)
        stale = distributed.broadcast_object(ctx, stale)
        distributed.barrier(ctx)
    if ctx.is_main:
        log(f"done: best val AUC {best_auc:.4f} at epoch {best_epoch + 1}; checkpoints in {out}")
    return TrainResult(out=out, best_epoch=best_epoch + 1, best_val_auc=best_auc, history=history)
