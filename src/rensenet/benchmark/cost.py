"""The one cost timer: parameters, GFLOPs, images/s and latency of a model, measured in a fresh process per (task, model)."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import numpy as np
import torch

from ..base.io import write_json
from .config import BenchmarkConfig
from .processes import machine_description, run_child


def gflops_of(fn: Callable[[], Any]) -> float:
    """GFLOPs of one call of ``fn`` without autograd (``torch.utils.flop_counter``: a multiply-add counts 2 FLOPs)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        fn()
    return counter.get_total_flops() / 1e9


def gflops(model: torch.nn.Module, x: torch.Tensor) -> float:
    """GFLOPs of one forward pass of ``model`` in eval mode."""
    model.eval()
    return gflops_of(lambda: model(x))


def train_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, amp: bool = False,
               compiled: bool = False) -> Callable[[], None]:
    """One SGD step as ``rensenet train`` takes it (the three-head loss for RenseNet models)."""
    from ..models import RenseNetLoss

    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    loss_fn = RenseNetLoss()
    forward = model.forward_heads if hasattr(model, "forward_heads") else model
    forward = torch.compile(forward) if compiled else forward

    def step() -> None:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            loss = loss_fn(forward(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def inference(model: torch.nn.Module, x: torch.Tensor, *, amp: bool = False) -> Callable[[], None]:
    """One forward pass in eval mode, without autograd."""
    model.eval()

    def run() -> None:
        with torch.inference_mode(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            model(x)

    return run


def seconds_per_call(fns: Dict[str, Callable[[], None]], *, warmup: int = 2, repeats: int = 5,
                     inner: int = 1) -> Dict[str, float]:
    """Median seconds per call of each function, timed round-robin after ``warmup`` calls each, so that a slower
    moment of the machine hits every function alike (CUDA work is waited for before the clock stops)."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() and torch.cuda.is_initialized() else (lambda: None)
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: Dict[str, list] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            sync()
            t = time.perf_counter()
            for _ in range(inner):
                fn()
            sync()
            samples[k].append((time.perf_counter() - t) / inner)
    return {k: float(np.median(v)) for k, v in samples.items()}


def measure_cost(model: torch.nn.Module, *, in_chans: int, img_size: int, train_batch: int = 32,
                 infer_batch: int = 64, steps: int = 10, device: str = "cpu", amp: bool = False,
                 channels_last: bool = False) -> Dict[str, float]:
    """Parameters, GFLOPs, training images/s, latency at batch 1 and images/s at ``infer_batch``, on ``device``."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device).to(memory_format=fmt)

    def batch(n: int) -> torch.Tensor:
        return torch.randn(n, in_chans, img_size, img_size, device=device).contiguous(memory_format=fmt)

    out: Dict[str, float] = {"params": int(sum(p.numel() for p in model.parameters())),
                             "gflops": gflops(model, batch(1))}
    out["infer_ms_batch1"] = seconds_per_call({"b1": inference(model, batch(1), amp=amp)}, warmup=3,
                                              repeats=30)["b1"] * 1000
    out["infer_img_per_s_batch64" if infer_batch == 64 else f"infer_img_per_s_batch{infer_batch}"] = infer_batch / \
        seconds_per_call({"b": inference(model, batch(infer_batch), amp=amp)}, warmup=1, repeats=3)["b"]
    y = torch.randint(0, 2, (train_batch,), device=device)
    out["train_img_per_s"] = train_batch / seconds_per_call(
        {"t": train_step(model, batch(train_batch), y, amp=amp)}, warmup=2, repeats=steps)["t"]
    return out


def cost_child() -> None:
    """Entry of the cost process: build the model from argv[1] (JSON), measure, print one JSON line."""
    from ..base import create_model

    spec = json.loads(sys.argv[1])
    model = create_model(spec["model"], num_classes=spec["num_classes"], in_chans=spec["in_chans"],
                         model_kwargs=spec.get("model_kwargs"))
    print(json.dumps(measure_cost(model, in_chans=spec["in_chans"], img_size=spec["img_size"])))


def cost_spec(record: Dict[str, Any]) -> Dict[str, Any]:
    """What a cost depends on: the model, its options and the input it was measured at."""
    spec = {k: record[k] for k in ("num_classes", "in_chans", "img_size")}
    spec.update(model=record["timm_model"], model_kwargs=record["train_options"].get("model_kwargs") or {})
    return spec


def cost_path(cfg: BenchmarkConfig, task: str, name: str) -> Path:
    """Where one (task, model)'s measured cost is cached, with the spec it was measured for."""
    return Path(cfg.out) / "costs" / task / f"{name}.json"


def cached_cost(path: Path, spec: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The cost cached at ``path``, unless it was measured for other settings (e.g. before a 2x-input trial won)."""
    if not path.exists():
        return None
    cost = json.loads(path.read_text())
    return cost if cost.pop("spec", spec) == spec else None  # files written before the spec was kept: as is


def model_cost(cfg: BenchmarkConfig, task: str, name: str, record: Dict[str, Any]) -> Dict[str, float]:
    """Cost of one (task, model) on this machine's CPU, measured once in a fresh process and cached.

    A fresh process makes ``peak_train_mem_mb`` (its peak resident memory while it runs training steps at
    batch 32) comparable between models, and independent of where the accuracy runs were trained.
    """
    path = cost_path(cfg, task, name)
    spec = cost_spec(record)
    cached = cached_cost(path, spec)
    if cached is not None:
        return cached
    path.parent.mkdir(parents=True, exist_ok=True)
    log = path.with_suffix(".log")
    log.unlink(missing_ok=True)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    _, peak_mb = run_child([sys.executable, "-c", "from rensenet.benchmark.cost import cost_child; cost_child()",
                             json.dumps(spec)], log, env=env)
    cost = json.loads(log.read_text().strip().splitlines()[-1])
    cost.update(peak_train_mem_mb=round(peak_mb, 1), cost_machine=machine_description(cpu=True))
    write_json(path, {**cost, "spec": spec})
    return cost
