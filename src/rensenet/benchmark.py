"""``rensenet benchmark --config FILE``: every model on every task, same splits, seeds, epochs and recipe.

Each (task, model, seed) trains in its own process (so its peak memory is its own), then is evaluated, explained
and costed; the record is appended to ``results.json`` at once, so an interrupted benchmark resumes where it
stopped and a finished run is never redone. ``report`` turns the records into Markdown tables and figures.
"""
from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch
import yaml

from .io import write_json, write_text

RECORD_FIELDS = ("task", "model", "seed", "auc", "accuracy", "sensitivity", "specificity", "f1",
                 "small_lesion_sensitivity", "pointing_game", "energy_lift", "params", "gflops", "train_img_per_s",
                 "infer_ms_batch1", "infer_img_per_s_batch64", "peak_train_mem_mb", "epochs", "img_size",
                 "train_seconds")


@dataclass
class BenchmarkConfig:
    """The YAML file: shared recipe, tasks (with input size), models (name -> timm model and overrides), seeds."""

    tasks: Dict[str, Dict[str, Any]]
    models: Dict[str, Dict[str, Any]]
    seeds: List[int] = field(default_factory=lambda: [0, 1, 2])
    epochs: int = 12
    data_root: str = "../shared/data"
    out: str = "runs/benchmark"
    results: str = "benchmarks/results.json"
    report: str = "benchmarks/RESULTS.md"
    train: Dict[str, Any] = field(default_factory=dict)  # extra `rensenet train` options for every run
    explain: Dict[str, Any] = field(default_factory=dict)  # `rensenet explain` options
    sweep: Dict[str, List[Any]] = field(default_factory=dict)  # {"lr": [...], "img_scale": [1, 2]}, chosen on val
    sweep_epochs: Optional[int] = None  # epochs of each sweep run (default: epochs)
    n_boot: int = 1000

    @classmethod
    def load(cls, path: str | Path) -> "BenchmarkConfig":
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise ValueError(f"{path}: benchmark config not found") from None
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML ({e})") from None
        if not isinstance(raw, dict) or "tasks" not in raw or "models" not in raw:
            raise ValueError(f"{path}: a benchmark config needs 'tasks' and 'models' (see benchmarks/*.yaml)")
        unknown = sorted(set(raw) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"{path}: unknown keys {unknown}")
        cfg = cls(**raw)
        for name, m in cfg.models.items():
            if "model" not in (m or {}):
                raise ValueError(f"{path}: model entry {name!r} needs 'model: <timm or rensenet name>'")
        return cfg


def _options(values: Dict[str, Any]) -> List[str]:
    """``{"batch_size": 32, "model_kwargs": {...}}`` -> ``["--batch-size", "32", "--model-kwargs", "{...}"]``."""
    args: List[str] = []
    for key, value in values.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            args += [flag] if value else []
        elif isinstance(value, (dict, list)):
            args += [flag, json.dumps(value)]
        else:
            args += [flag, str(value)]
    return args


def _run_train(cmd: List[str], log: Path) -> tuple:
    """Run ``cmd`` as a child process; (seconds, peak resident memory of that child in MB)."""
    start = time.time()
    with open(log, "a") as f:
        f.write("$ " + " ".join(shlex.quote(c) for c in cmd) + "\n")
        f.flush()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"training failed (exit {proc.returncode}); see {log}")
    return time.time() - start, usage.ru_maxrss / 1024.0


def measure_cost(model: torch.nn.Module, *, in_chans: int, img_size: int, train_batch: int = 32,
                 steps: int = 10) -> Dict[str, float]:
    """Parameters, GFLOPs (torch.utils.flop_counter), training images/s and inference latency on this machine."""
    from torch.utils.flop_counter import FlopCounterMode

    from .models import RenseNetLoss

    x1 = torch.randn(1, in_chans, img_size, img_size)
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x1)
    out: Dict[str, float] = {"params": int(sum(p.numel() for p in model.parameters())),
                             "gflops": counter.get_total_flops() / 1e9}
    with torch.no_grad():
        for _ in range(3):
            model(x1)
        times = []
        for _ in range(30):
            t = time.perf_counter()
            model(x1)
            times.append(time.perf_counter() - t)
        out["infer_ms_batch1"] = float(np.median(times) * 1000)
        x64 = torch.randn(64, in_chans, img_size, img_size)
        model(x64)
        t = time.perf_counter()
        for _ in range(3):
            model(x64)
        out["infer_img_per_s_batch64"] = 3 * 64 / (time.perf_counter() - t)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    loss_fn = RenseNetLoss()
    xb, yb = torch.randn(train_batch, in_chans, img_size, img_size), torch.randint(0, 2, (train_batch,))
    step_fn = model.forward_heads if hasattr(model, "forward_heads") else model
    for i in range(steps + 2):
        if i == 2:
            t = time.perf_counter()
        loss = loss_fn(step_fn(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    out["train_img_per_s"] = steps * train_batch / (time.perf_counter() - t)
    return out


def choose_settings(cfg: BenchmarkConfig, task: str, name: str, spec: Dict[str, Any],
                    base_opts: Dict[str, Any]) -> Dict[str, Any]:
    """The learning rate and input scale with the best validation AUC (seed 0), cached in ``out/sweep.json``.

    ``cfg.sweep`` (or a model's own ``sweep``) lists the values: ``lr`` and ``img_scale`` (x the task's
    ``img_size``, for networks designed for 224 px images). Test data is never looked at.
    """
    import pandas as pd

    sweep = {**cfg.sweep, **(spec.get("sweep") or {})}
    lrs, scales = sweep.get("lr", [base_opts.get("lr")]), sweep.get("img_scale", [1])
    if len(lrs) * len(scales) <= 1:
        return {}
    cache_path = Path(cfg.out) / "sweep.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    key = f"{task}/{name}"
    if key in cache:
        return cache[key]["chosen"]
    if any(s != 1 for s in scales) and "img_size" not in base_opts:
        raise ValueError(f"task {task!r} needs img_size in the config to sweep img_scale")
    tried = []
    for lr in lrs:
        for scale in scales:
            opts = {k: v for k, v in (("lr", lr), ("img_size", int(base_opts["img_size"] * scale) if scale != 1
                                                     else base_opts.get("img_size"))) if v is not None}
            out = Path(cfg.out) / "sweep" / task / name / "-".join(f"{k}{v}" for k, v in opts.items())
            cmd = [sys.executable, "-m", "rensenet", "train", "--data", str(Path(cfg.data_root) / task),
                   "--model", spec["model"], "--out", str(out), "--epochs", str(cfg.sweep_epochs or cfg.epochs),
                   "--seed", "0", "--no-progress", *_options({**base_opts, **opts})]
            if not (out / "history.csv").exists() or len(pd.read_csv(out / "history.csv")) < (cfg.sweep_epochs or cfg.epochs):
                if (out / "last.pt").exists():
                    cmd.append("--resume")
                out.mkdir(parents=True, exist_ok=True)
                _run_train(cmd, out / "log.txt")
            tried.append({**opts, "val_auc": float(pd.read_csv(out / "history.csv")["val_auc"].max())})
    best = max(tried, key=lambda t: t["val_auc"])
    cache[key] = {"tried": tried, "chosen": {k: v for k, v in best.items() if k != "val_auc"}}
    write_json(cache_path, cache)
    return cache[key]["chosen"]


def run_benchmark(cfg: BenchmarkConfig, *, only_models: Optional[List[str]] = None,
                  only_tasks: Optional[List[str]] = None) -> List[Dict[str, Any]]:
    """Train, evaluate, explain and cost every (task, model, seed) not yet in ``cfg.results``."""
    from .evaluation.report import evaluate
    from .explanation import explain
    from .training.checkpoint import load_model

    results_path = Path(cfg.results)
    records: List[Dict[str, Any]] = json.loads(results_path.read_text()) if results_path.exists() else []
    done = {(r["task"], r["model"], r["seed"]) for r in records}
    for task, task_opts in cfg.tasks.items():
        if only_tasks and task not in only_tasks:
            continue
        data = str(Path(cfg.data_root) / task)
        for name, spec in cfg.models.items():
            if only_models and name not in only_models:
                continue
            for seed in cfg.seeds:
                if (task, name, seed) in done:
                    continue
                out = Path(cfg.out) / task / name / f"seed{seed}"
                out.mkdir(parents=True, exist_ok=True)
                train_opts = {**cfg.train, **(task_opts or {}),
                              **{k: v for k, v in spec.items() if k not in ("model", "sweep")}}
                train_opts.update(choose_settings(cfg, task, name, spec, train_opts))
                cmd = [sys.executable, "-m", "rensenet", "train", "--data", data, "--model", spec["model"],
                       "--out", str(out / "run"), "--epochs", str(cfg.epochs), "--seed", str(seed), "--no-progress",
                       *_options(train_opts)]
                if (out / "run" / "last.pt").exists():
                    cmd.append("--resume")
                print(f"[{task} / {name} / seed {seed}] training", flush=True)
                seconds, peak_mb = _run_train(cmd, out / "log.txt")
                ckpt = out / "run" / "best.pt"
                metrics = evaluate(ckpt, data, split="test", out=out / "eval", n_boot=cfg.n_boot)
                loc = explain(ckpt, data, out=out / "explain", **{"split": "test", "n_boot": cfg.n_boot, **cfg.explain})
                model, run_cfg = load_model(ckpt)
                cost = measure_cost(model, in_chans=run_cfg["in_chans"], img_size=run_cfg["img_size"])
                small = [r for r in metrics.get("sensitivity_by_lesion_size", []) if r["tercile"] == "small"]
                summary = loc.localization
                record = {
                    "task": task, "model": name, "seed": seed,
                    **{k: metrics[k]["value"] for k in ("auc", "accuracy", "sensitivity", "specificity", "f1")},
                    "small_lesion_sensitivity": small[0]["sensitivity"] if small else None,
                    "pointing_game": summary.get("pointing_game", {}).get("value"),
                    "energy_lift": summary.get("energy_lift", {}).get("value"),
                    **cost, "peak_train_mem_mb": round(peak_mb, 1), "epochs": cfg.epochs,
                    "img_size": run_cfg["img_size"], "train_seconds": round(seconds, 1),
                    "timm_model": spec["model"], "train_options": train_opts, "cam": summary.get("method"),
                    "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}",
                    "date": date.today().isoformat(), "command": " ".join(shlex.quote(c) for c in cmd[1:]),
                }
                records.append(record)
                write_json(results_path, records)  # after every run: safe to interrupt
    return records


def paired_test(records: List[Dict[str, Any]], task: str, a: str, b: str, metric: str = "auc") -> Optional[Dict[str, float]]:
    """Paired t-test over the seeds both models ran: mean difference a - b and its p-value."""
    from scipy.stats import ttest_rel

    va = {r["seed"]: r[metric] for r in records if r["task"] == task and r["model"] == a}
    vb = {r["seed"]: r[metric] for r in records if r["task"] == task and r["model"] == b}
    seeds = sorted(set(va) & set(vb))
    if len(seeds) < 2:
        return None
    x, y = np.array([va[s] for s in seeds]), np.array([vb[s] for s in seeds])
    p = float(ttest_rel(x, y).pvalue) if np.any(x - y) else 1.0
    return {"n_seeds": len(seeds), "mean_difference": float((x - y).mean()), "p_value": p}


def heatmap_comparison(cfg: BenchmarkConfig, task: str, *, seed: int = 0, n: int = 8) -> Optional[Path]:
    """Every model's heatmap (its default CAM) on the same first ``n`` test lesions, side by side."""
    from .explanation import compare_models, explain_model

    data = str(Path(cfg.data_root) / task)
    explanations = {}
    for name in cfg.models:
        ckpt = Path(cfg.out) / task / name / f"seed{seed}" / "run" / "best.pt"
        if ckpt.exists():
            explanations[name] = explain_model(ckpt, data, **{"split": "test", **cfg.explain, "faithfulness": False,
                                                              "n_boot": 10})
    if not explanations or not len(next(iter(explanations.values())).lesion_rows):
        return None
    path = compare_models(explanations, Path(cfg.report).parent, n=n)
    return path.rename(path.with_name(f"heatmaps_{task}.png"))


def report(cfg: BenchmarkConfig, records: List[Dict[str, Any]], *, reference: str = "rensenet_s") -> str:
    """Markdown: mean +- std over seeds per task and model, the paired test against the best baseline, figures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io import save_figure

    cols = ["auc", "accuracy", "sensitivity", "specificity", "f1", "small_lesion_sensitivity", "pointing_game",
            "energy_lift", "params", "gflops", "train_img_per_s", "infer_ms_batch1", "infer_img_per_s_batch64",
            "peak_train_mem_mb", "train_seconds"]
    lines = [f"# Benchmark ({date.today().isoformat()})", "",
             f"{cfg.epochs} epochs, seeds {cfg.seeds}, test split; mean +- std over seeds. Machine: "
             f"{records[0]['machine'] if records else '?'}.", ""]
    report_dir = Path(cfg.report).parent
    for task in cfg.tasks:
        rows = [r for r in records if r["task"] == task]
        if not rows:
            continue
        lines += [f"## {task}", "", "| model | n | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
        means = {}
        for name in cfg.models:
            rs = [r for r in rows if r["model"] == name]
            if not rs:
                continue
            cells = []
            for c in cols:
                v = np.array([r[c] for r in rs if r.get(c) is not None], dtype=float)
                cells.append("-" if not len(v) else f"{v.mean():.3g} +- {v.std():.2g}" if len(v) > 1 else f"{v.mean():.3g}")
            means[name] = {c: np.mean([r[c] for r in rs if r.get(c) is not None] or [np.nan]) for c in cols}
            lines.append(f"| {name} | {len(rs)} | " + " | ".join(cells) + " |")
        baselines = [m for m in means if not m.startswith("rensenet") and not m.startswith("ecm")]
        if reference in means and baselines:
            best = max(baselines, key=lambda m: means[m]["auc"])
            test = paired_test(records, task, reference, best)
            if test:
                lines += ["", f"{reference} vs the best baseline on AUC ({best}): difference "
                              f"{test['mean_difference']:+.4f}, paired t-test over {test['n_seeds']} seeds p = {test['p_value']:.3g}."]
        fig, ax = plt.subplots(figsize=(5, 3.6))
        for name, m in means.items():
            ax.scatter(m["gflops"], m["auc"])
            ax.annotate(name, (m["gflops"], m["auc"]), fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel("GFLOPs per image")
        ax.set_ylabel("test AUC")
        ax.set_title(task)
        fig.tight_layout()
        save_figure(report_dir / f"auc_vs_gflops_{task}.png", fig, dpi=130)
        lines += ["", f"![AUC vs GFLOPs](auc_vs_gflops_{task}.png)", ""]
        if heatmap_comparison(cfg, task) is not None:
            lines += [f"![Heatmaps of every model on the same test lesions](heatmaps_{task}.png)", ""]
    text = "\n".join(lines) + "\n"
    write_text(cfg.report, text)
    return text
