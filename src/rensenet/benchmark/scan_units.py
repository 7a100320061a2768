"""Whole-image units of the benchmark (``kind: scans``, benchmarks/scans.yaml): a model trained from whole images
(the task's ``patch_size``, the recipe's hard negatives and context) is scored on test by ``rensenet scan`` in a
child process, so its FROC, seconds per slice and peak memory are those a user gets; GFLOPs per slice are counted
on the dense window map of the first test slice."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict

import pandas as pd
import torch

from ..base import load_model
from ..base.windows import WindowScorer
from ..data import image_paths, read_manifest, select_split
from ..data.volumes import image_volume
from ..scanning.run import ScanSettings
from .config import BenchmarkConfig
from .cost import gflops_of
from .processes import machine_description, run_child


def slice_gflops(checkpoint: Path, image_path: str, settings: ScanSettings) -> float:
    """GFLOPs of the dense window map of one slice (as ``scan`` prepares it), at the scan's stride."""
    model, cfg = load_model(checkpoint)
    scorer = WindowScorer(model, cfg, stride=settings.stride)
    x = scorer.prepare(image_volume(image_path).read(0)[None].repeat(cfg.in_chans, 0))[0]
    return gflops_of(lambda: scorer.window_logits(x))


def scan_fields(scan_out: Path, *, seconds: float, peak_mb: float) -> Dict[str, Any]:
    """The record fields of one scoring process that wrote ``scan_out`` (froc.json, images.csv): FROC, seconds per
    slice, peak memory and the machine; shared by the classifiers and the detector anchor."""
    froc = json.loads((scan_out / "froc.json").read_text())
    images = pd.read_csv(scan_out / "images.csv")
    small = [r for r in froc["by_lesion_size"] if r["tercile"] == "small"]
    return {
        "cpm": froc["cpm"]["value"], "cpm_ci": [froc["cpm"]["ci_low"], froc["cpm"]["ci_high"]],
        "sens_at_fp": {rate: v["value"] for rate, v in froc["sens_at_fp"].items()},
        "small_lesion_sens_at_1fp": small[0]["sens_at_fp"]["1"] if small else None,
        "seconds_per_slice": float(images["seconds_per_slice"].mean()), "peak_mem_mb": round(peak_mb, 1),
        "scan_seconds": round(seconds, 1), "scan_machine": machine_description(cpu=True),
        "threads": torch.get_num_threads(), "n_images": froc["n_images"], "n_lesions": froc["n_lesions"],
        "curve": froc["curve"],
    }


def cam_choice(cfg: BenchmarkConfig, task: str, name: str) -> Dict[str, Any]:
    """The heatmap that places a model's candidates: the CAM method and target layers chosen on val for it on the
    matching window task (``cam_choices``: its records in that benchmark's results), or the model's default (both
    None) where there is none."""
    where = cfg.cam_choices.get(task)
    results = Path(where["results"]) if where else None
    records = json.loads(results.read_text()) if results is not None and results.exists() else []
    chosen = next((r for r in records if r.get("task") == where["task"] and r.get("model") == name
                   and r.get("cam_method")), None)
    return {"cam_method": chosen["cam_method"] if chosen else None,
            "cam_target": list(chosen["cam_target"]) if chosen else None}


def scan_record(cfg: BenchmarkConfig, task: str, name: str, seed: int, *, run: Path, out: Path,
                timing: Dict[str, Any], options: Dict[str, Any]) -> Dict[str, Any]:
    """The record of one trained (task, model, seed): ``rensenet scan --data`` of the test split in a child process
    (its FROC, seconds per slice and peak memory), and the GFLOPs of one slice."""
    data = Path(cfg.data_root) / task
    ckpt = run / "best.pt"
    scan_out = out / "scan"
    out.mkdir(parents=True, exist_ok=True)  # seed 0 may be the sweep's winning run, trained elsewhere
    cam = cam_choice(cfg, task, name)
    heatmap = ["--cam-method", cam["cam_method"], "--cam-layers", *cam["cam_target"]] if cam["cam_method"] else []
    seconds, peak_mb = run_child([sys.executable, "-m", "rensenet", "scan", "--checkpoint", str(ckpt), "--data",
                                  str(data), "--split", "test", "--out", str(scan_out), "--overlays", "0",
                                  "--no-progress", *heatmap], out / "scan.log")
    first = image_paths(select_split(read_manifest(data), "test"))[0]
    run_cfg = json.loads((run / "config.json").read_text())
    return {
        "task": task, "model": name, "seed": seed, **scan_fields(scan_out, seconds=seconds, peak_mb=peak_mb),
        "gflops_per_slice": slice_gflops(ckpt, first, ScanSettings.for_weights(ckpt)),
        "lr": run_cfg["lr"], "epochs": cfg.epochs, "img_size": run_cfg["img_size"],
        "in_chans": run_cfg["in_chans"], "num_classes": run_cfg["num_classes"],
        "context": run_cfg.get("context", 0), **cam, **timing, "run": str(run), "train_options": options,
    }
