"""Optimizer and learning-rate schedule from timm, stepped per update.

``create_optimizer_v2(filter_bias_and_bn=True)`` puts no weight decay on norms and biases. The schedule is a
function of the update count alone, so a resumed run sets it from the step it resumes at.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler, StepLRScheduler
from timm.scheduler.scheduler import Scheduler

from ..base import TrainConfig


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD with momentum (timm's ``momentum``: no Nesterov, as the paper) or AdamW, at ``cfg.lr``."""
    if cfg.optimizer == "adamw":
        return create_optimizer_v2(model, opt="adamw", lr=cfg.lr, weight_decay=cfg.weight_decay,
                                   filter_bias_and_bn=True)
    return create_optimizer_v2(model, opt="momentum", lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay, filter_bias_and_bn=True)


def make_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> Scheduler:
    """Cosine to 0 over the run (or constant), after a linear warm-up of ``cfg.warmup_epochs``.

    The warm-up starts at ``lr / warmup_steps`` and rises linearly to ``lr``; the cosine then runs over the
    steps that are left. Call ``step_update(n)`` after the n-th update.
    """
    total = cfg.epochs * steps_per_epoch
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    common = dict(warmup_t=warmup, warmup_lr_init=cfg.lr / max(warmup, 1), warmup_prefix=True, t_in_epochs=False)
    if cfg.scheduler == "constant":
        return StepLRScheduler(optimizer, decay_t=max(total, 1) * 10, decay_rate=1.0, **common)
    return CosineLRScheduler(optimizer, t_initial=max(total - warmup, 1), lr_min=0.0, **common)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Resume an optimizer, also from checkpoints written before timm made the groups (decay first, then
    no-decay: timm orders them the other way round)."""
    groups = state["param_groups"]
    sizes = [len(g["params"]) for g in optimizer.param_groups]
    if [len(g["params"]) for g in groups] != sizes and [len(g["params"]) for g in groups[::-1]] == sizes:
        state = {**state, "param_groups": groups[::-1]}
    optimizer.load_state_dict(state)
