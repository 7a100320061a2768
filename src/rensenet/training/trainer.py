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
from tqdm.auto import tqdm

from ..base import TrainConfig, create_model, load_checkpoint, save_checkpoint
from ..base.io import write_csv, write_json
from ..data import class_names, read_manifest, select_split
from ..data.manifest import window_class_names
from ..models import RenseNetLoss, WindowInContext
from . import distributed
from .images import ImageData
from .optim import load_optimizer_state, make_optimizer, make_scheduler


@dataclass
class TrainResult:
    out: Path
    best_epoch: int
    best_score: float
    selection: str  # the history column that chose best.pt: val_auc, val_accuracy or val_cpm
    history: List[Dict[str, Any]]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _resume_checkpoint(cfg: TrainConfig, out: Path) -> Dict[str, Any]:
    """The interrupted run's checkpoint, after checking the new command asks for the same run."""
    ckpt = load_checkpoint(out / "last.pt")
    saved = ckpt["config"]
    mine = cfg.to_dict()
    same = lambda k: mine[k] == saved.get(k) or (isinstance(saved.get(k), (list, tuple))  # noqa: E731
                                                  and tuple(saved[k]) == tuple(mine[k] or ()))
    changed = [k for k in mine if k not in TrainConfig.RESUMABLE_CHANGES + TrainConfig.DERIVED and k in saved
               and not same(k)]
    if changed:
        raise ValueError(f"{out}: --resume with different settings {changed} than the interrupted run; "
                         "use the same command (only --epochs and --early-stopping may change) or a new --out")
    return ckpt


def _data_for(cfg: TrainConfig):
    """(config with classes filled in, the epoch data: whole-image windows with ``patch_size``, else the images)."""
    frame = read_manifest(cfg.data)
    train_frame, val_frame = select_split(frame, cfg.train_split), select_split(frame, cfg.val_split)
    names = (window_class_names if cfg.patch_size else class_names)(frame, cfg.class_names)
    cfg = replace(cfg, num_classes=len(names), class_names=names)
    if cfg.patch_size is not None:
        from .windows import WindowData

        data = WindowData(cfg, train_frame, val_frame)
    else:
        data = ImageData(cfg, train_frame, val_frame)
    return data.cfg, data


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
        resume_ckpt = _resume_checkpoint(cfg, out)
    log = print if ctx.is_main else (lambda *a, **k: None)

    cfg, data = _data_for(cfg)
    if len(data) < cfg.batch_size:
        raise ValueError(f"{cfg.data}: the {cfg.train_split!r} split gives {len(data)} training samples per epoch, "
                         f"fewer than --batch-size {cfg.batch_size}")
    if cfg.batch_size % ctx.world_size:
        raise ValueError(f"--batch-size {cfg.batch_size} must divide evenly among {ctx.world_size} processes")
    label = data.selection.replace("val_", "val ").replace("auc", "AUC").replace("cpm", "CPM")
    log(f"{cfg.model} on {cfg.data}: {data.selection_note}")

    seed_everything(cfg.seed)
    model = create_model(cfg.model, num_classes=int(cfg.num_classes), in_chans=cfg.in_chans,
                         model_kwargs=cfg.model_kwargs).to(ctx.device)
    memory_format = torch.channels_last if cfg.channels_last and cfg.model_kwargs.get("spatial_dims", 2) == 2 \
        else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    criterion = RenseNetLoss(backbone=cfg.head_weights[0], ecm=cfg.head_weights[1], fused=cfg.head_weights[2],
                             label_smoothing=cfg.label_smoothing)
    # every head for the loss, and only the window's cells pooled where it sees context: the call
    # DistributedDataParallel wraps is the one the loss needs
    heads = hasattr(model, "forward_heads")
    step_module: nn.Module = WindowInContext(model, cfg.model_context, heads=heads) if heads or cfg.context else model
    if ctx.distributed:
        step_module = DistributedDataParallel(step_module, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
    per_rank_batch = cfg.batch_size // ctx.world_size
    steps_per_epoch = len(data.sampler(ctx)) // per_rank_batch
    optimizer = make_optimizer(cfg, model)
    scheduler = make_scheduler(cfg, optimizer, steps_per_epoch)
    amp = cfg.amp if cfg.amp is not None else ctx.device.type == "cuda"
    amp_dtype = torch.bfloat16 if (ctx.device.type != "cuda" or torch.cuda.is_bf16_supported()) else torch.float16
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=amp and amp_dtype == torch.float16)

    history: List[Dict[str, Any]] = []
    start_epoch, best, best_epoch, stale = 0, -math.inf, -1, 0
    if resume_ckpt is not None:
        model.load_state_dict(resume_ckpt["state_dict"])
        load_optimizer_state(optimizer, resume_ckpt["optimizer"])
        scaler.load_state_dict(resume_ckpt["scaler"])
        history = resume_ckpt["history"]
        start_epoch = resume_ckpt["epoch"] + 1
        best = resume_ckpt.get("best_score", resume_ckpt.get("best_val_auc"))  # the key before v0.2
        best_epoch, stale = resume_ckpt["best_epoch"], resume_ckpt["stale"]
        data.load_state(resume_ckpt.get("data_state") or {})
        scheduler.step_update(start_epoch * steps_per_epoch)
        log(f"resuming {out} at epoch {start_epoch + 1}/{cfg.epochs}")
    if ctx.is_main:
        write_json(out / "config.json", cfg.to_dict())

    for epoch in range(start_epoch, cfg.epochs):
        if cfg.early_stopping and stale >= cfg.early_stopping:
            log(f"early stopping: no better {label} for {stale} epochs")
            break
        # each epoch's randomness depends only on (seed, epoch, rank): a resumed run repeats it exactly
        seed_everything(cfg.seed * 1000 + epoch * ctx.world_size + ctx.rank)
        loader = data.loader(epoch, ctx, per_rank_batch)
        model.train()
        t0, loss_sum, n_seen = time.time(), 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, file=sys.stderr,
                   disable=None if (ctx.is_main and cfg.progress) else True)  # None: off when not a terminal
        for step, batch in enumerate(bar):
            x = batch["image"].to(ctx.device, non_blocking=True).contiguous(memory_format=memory_format)
            y = torch.as_tensor(batch["label"]).to(ctx.device)
            with torch.autocast(ctx.device.type, dtype=amp_dtype, enabled=amp):
                loss = criterion(step_module(x), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step_update(epoch * steps_per_epoch + step + 1)
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"training loss is {loss.item()} at epoch {epoch + 1}; lower --lr")
            loss_sum += loss.item() * len(y)
            n_seen += len(y)
            bar.set_postfix(loss=f"{loss_sum / n_seen:.4f}")
        train_seconds = time.time() - t0
        last = epoch + 1 == cfg.epochs  # what is mined after the last epoch would never be sampled
        mined = data.after_epoch(model, epoch, ctx.device, last=last) if ctx.is_main else {}
        data.load_state(distributed.broadcast_object(ctx, data.state()))  # every rank samples the same windows

        if ctx.is_main:
            score, val = data.validate(model, ctx.device, amp=amp)
            improved = score > best
            if improved:
                best, best_epoch, stale = score, epoch, 0
            else:
                stale += 1
            record = {"epoch": epoch + 1, "train_loss": loss_sum / max(n_seen, 1), **val,
                      "lr": optimizer.param_groups[0]["lr"], "seconds": round(train_seconds, 2), **mined}
            history.append(record)
            meta = dict(epoch=epoch, selection=data.selection, score=float(score), class_names=cfg.class_names)
            if improved:
                save_checkpoint(out / "best.pt", model, cfg, **meta)
            save_checkpoint(out / "last.pt", model, cfg, **meta, optimizer=optimizer.state_dict(),
                            scheduler=scheduler.state_dict(), scaler=scaler.state_dict(), history=history,
                            best_score=float(best), best_epoch=best_epoch, stale=stale, data_state=data.state())
            write_csv(out / "history.csv", pd.DataFrame(history))
            shown = "  ".join(f"{k} {v:.4f}" for k, v in val.items())
            log(f"epoch {epoch + 1}/{cfg.epochs}  train_loss {record['train_loss']:.4f}  {shown}  "
                f"lr {record['lr']:.2e}  {train_seconds:.0f}s" + ("  *best" if improved else ""), flush=True)
        stale = distributed.broadcast_object(ctx, stale)
        distributed.barrier(ctx)
    if ctx.is_main:
        log(f"done: best {label} {best:.4f} at epoch {best_epoch + 1}; checkpoints in {out}")
    return TrainResult(out=out, best_epoch=best_epoch + 1, best_score=float(best), selection=data.selection,
                       history=history)
