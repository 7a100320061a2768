"""The budget of a whole-image benchmark before it runs (``rensenet benchmark --costs-only`` on a ``kind: scans``
config): one training step and one dense scan of each model timed on this machine, multiplied out by the recipe.

A run's hours are its epochs x (window steps + a dense scan of every val image + with hard negatives, of every
train image); a unit's are its sweep points and other seeds, and the test scans. CAM refinement is not counted
(it adds a few candidates' heatmaps per image), so the estimate is a lower bound for the classifiers.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch

from ..base.io import write_json
from ..data import image_shape, read_manifest, select_split
from .config import BenchmarkConfig, base_options, unit_sweep, units
from .cost import seconds_per_call, train_step
from .processes import machine_description

#: Windows per timed training step; the step's time is scaled to the recipe's batch (linear on a CPU).
TIMED_BATCH = 8


def estimate_path(cfg: BenchmarkConfig) -> Path:
    return Path(cfg.results).with_name(Path(cfg.results).stem + "_estimate.json")


def _split_sizes(data: Path) -> Dict[str, Any]:
    manifest = read_manifest(data)
    first = select_split(manifest, "train")["path"].iloc[0]
    sizes = {split: len(select_split(manifest, split)) for split in ("train", "val", "test")}
    return {"shape": image_shape(Path(manifest.attrs["root"]) / first), **sizes}


def _classifier_seconds(spec: Dict[str, Any], opts: Dict[str, Any], shape: tuple) -> Dict[str, float]:
    """(seconds of one training window, seconds of one dense scan) of a fresh model with these options."""
    from ..base import create_model
    from ..models.dense import WindowInContext, dense_window_logits

    window = int(opts.get("img_size") or opts["patch_size"])
    scale = window / int(opts["patch_size"])
    context = int(round(int(opts.get("context", 0)) * scale))
    model = create_model(spec["model"], num_classes=2, in_chans=1, model_kwargs=opts.get("model_kwargs"))
    crop = torch.randn(TIMED_BATCH, 1, window + 2 * context, window + 2 * context)
    step = train_step(WindowInContext(model, context, heads=True), crop, torch.randint(0, 2, (TIMED_BATCH,)))
    h, w = (max(int(round(s * scale)) + window, window) for s in shape)  # the scan pads half a window a side
    image = torch.randn(1, 1, h, w)
    stride = int(opts.get("mining_stride", 8))

    def scan() -> None:
        model.eval()
        with torch.inference_mode():
            dense_window_logits(model, image, window=window, stride=stride, context=context)

    t = seconds_per_call({"step": step}, warmup=1, repeats=2)["step"]
    return {"window_s": t / TIMED_BATCH, "scan_s": seconds_per_call({"scan": scan}, warmup=1, repeats=2)["scan"]}


def _detector_seconds(spec: Dict[str, Any], shape: tuple) -> Dict[str, float]:
    """(seconds of one training image, seconds of detecting one image) of a fresh FCOS."""
    from .anchor import anchor_options, build_detector

    opts = anchor_options(spec)
    model = build_detector(backbone=opts["backbone"], short_side=min(shape), long_side=max(shape),
                           img_scale=opts["img_scale"])
    images = [torch.rand(3, *shape) for _ in range(opts["batch_size"])]
    box = torch.tensor([[shape[1] / 3, shape[0] / 3, shape[1] / 3 + 12, shape[0] / 3 + 12]])
    targets = [{"boxes": box, "labels": torch.ones(1, dtype=torch.int64)} for _ in images]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        model.train()
        loss = sum(model(images, targets).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def detect() -> None:
        model.eval()
        with torch.inference_mode():
            model(images[:1])

    t = seconds_per_call({"step": step, "detect": detect}, warmup=1, repeats=2)
    return {"image_s": t["step"] / len(images), "scan_s": t["detect"]}


def estimate_scan_budget(cfg: BenchmarkConfig) -> List[Dict[str, Any]]:
    """One row per (task, model): the measured step and scan seconds and the hours of its runs; written beside
    ``cfg.results`` (``scans_results_estimate.json``) for the report."""
    rows, sizes = [], {}
    for task, name in units(cfg):
        data = Path(cfg.data_root) / task
        n = sizes.setdefault(task, _split_sizes(data))
        spec = cfg.models[name]
        seeds = len(cfg.seeds)
        print(f"[{task} / {name}] timing a training step and a scan", flush=True)
        if spec.get("detector"):
            t = _detector_seconds(spec, n["shape"])
            run_s = cfg.epochs * (n["train"] * t["image_s"] + n["val"] * t["scan_s"])
            runs = seeds
        else:
            opts = base_options(cfg, task, name)
            t = _classifier_seconds(spec, opts, n["shape"])
            windows = n["train"] * int(opts.get("windows_per_image", 8))
            mining = n["train"] if opts.get("hard_negatives") else 0
            run_s = (cfg.epochs * (windows * t["window_s"] + n["val"] * t["scan_s"])
                     + (cfg.epochs - 1) * mining * t["scan_s"])  # no mining after the last epoch
            points = int(np.prod([len(v) for v in unit_sweep(cfg, task, name).values()] or [1]))
            runs = points + seeds - 1  # seed 0 is the sweep's winning run
        total = runs * run_s + seeds * n["test"] * t["scan_s"]
        rows.append({"task": task, "model": name, **t, "runs": runs, "seconds_per_run": run_s, "seconds": total})
    write_json(estimate_path(cfg), {"machine": machine_description(cpu=True), "threads": torch.get_num_threads(),
                                    "epochs": cfg.epochs, "rows": rows})
    return rows


def budget_table(cfg: BenchmarkConfig) -> List[str]:
    """The estimate as Markdown lines for the report (nothing before ``--costs-only`` has run)."""
    path = estimate_path(cfg)
    if not path.exists():
        return []
    import json

    est = json.loads(path.read_text())
    lines = ["## Budget (estimated before running: `rensenet benchmark --config ... --costs-only`)", "",
             f"One training step and one dense scan timed per model on {est['machine']}, {est['threads']} thread(s), "
             f"multiplied by the recipe ({est['epochs']} epochs; CAM refinement not counted, so a lower bound).", "",
             "| task | model | runs | hours per run | hours |", "|---|---|---|---|---|"]
    lines += [f"| {r['task']} | {r['model']} | {r['runs']} | {r['seconds_per_run'] / 3600:.2f} | "
              f"{r['seconds'] / 3600:.1f} |" for r in est["rows"]]
    return lines + ["", f"In all: {sum(r['seconds'] for r in est['rows']) / 3600:.0f} hours on that machine.", ""]
