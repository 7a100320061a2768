"""The benchmark's YAML config: recipe, tasks, models (name -> timm model and overrides), seeds, sweep."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml


RECORD_FIELDS = ("task", "model", "seed", "auc", "accuracy", "sensitivity", "specificity", "f1",
                 "small_lesion_sensitivity", "pointing_game", "energy_lift", "params", "gflops", "train_img_per_s",
                 "infer_ms_batch1", "infer_img_per_s_batch64", "peak_train_mem_mb", "epochs", "img_size",
                 "train_seconds")


#: A whole-image (``kind: scans``) record: FROC of ``rensenet scan`` on test and the cost of scanning.
SCAN_RECORD_FIELDS = ("task", "model", "seed", "cpm", "sens_at_fp", "small_lesion_sens_at_1fp", "seconds_per_slice",
                      "gflops_per_slice", "peak_mem_mb", "lr", "epochs", "train_seconds")
KINDS = ("windows", "scans")


COST_FIELDS = ("params", "gflops", "train_img_per_s", "infer_ms_batch1", "infer_img_per_s_batch64", "peak_train_mem_mb")


@dataclass
class BenchmarkConfig:
    """The YAML file: shared recipe, tasks (with input size), models (name -> timm model and overrides), seeds."""

    tasks: Dict[str, Dict[str, Any]]
    models: Dict[str, Dict[str, Any]]
    kind: str = "windows"  # or "scans": trained from whole images (tasks give patch_size), scored by FROC
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
    preamble: Optional[str] = None  # Markdown file put at the top of the report (commands, machine, choices)
    # kind scans: per task, {results: a windows benchmark's results file, task: its matching window task}; a model
    # whose records there carry the CAM --fair-heatmaps chose on val places its candidates with it, not its default
    cam_choices: Dict[str, Dict[str, str]] = field(default_factory=dict)
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
        if cfg.kind not in KINDS:
            raise ValueError(f"{path}: kind must be one of {KINDS}, got {cfg.kind!r}")
        if cfg.kind == "scans":
            flat = [t for t, opts in cfg.tasks.items() if not (opts or {}).get("patch_size")]
            if flat:
                raise ValueError(f"{path}: a scans benchmark trains from whole images: give tasks {flat} a patch_size")
        stray = sorted(t for t, c in cfg.cam_choices.items() if t not in cfg.tasks or not isinstance(c, dict)
                       or set(c) != {"results", "task"})
        if stray or (cfg.cam_choices and cfg.kind != "scans"):
            raise ValueError(f"{path}: cam_choices belongs to a kind: scans benchmark and maps each of its tasks to "
                             f"{{results: FILE, task: WINDOW_TASK}}; {stray or list(cfg.cam_choices)} do not fit")
        for name, m in cfg.models.items():
            if "model" not in (m or {}):
                raise ValueError(f"{path}: model entry {name!r} needs 'model: <timm or rensenet name>'")
            if m.get("detector") and (cfg.kind != "scans" or m["detector"] != "fcos"):
                raise ValueError(f"{path}: model entry {name!r}: the only detector is 'fcos' (with model: the "
                                 "backbone, e.g. resnet18), in a kind: scans benchmark")
        return cfg


def unit_sweep(cfg: BenchmarkConfig, task: str, name: str) -> Dict[str, List[Any]]:
    """The values swept for one (task, model): the config's, overridden by the model's, then by the task's."""
    return {**cfg.sweep, **(cfg.models[name].get("sweep") or {}), **((cfg.tasks[task] or {}).get("sweep") or {})}


def base_options(cfg: BenchmarkConfig, task: str, name: str) -> Dict[str, Any]:
    """The `rensenet train` options of one (task, model) before its sweep: recipe, then task, then model entry."""
    task_opts = {k: v for k, v in (cfg.tasks[task] or {}).items() if k != "sweep"}  # sweep: unit_sweep's
    opts = {**cfg.train, **task_opts, **{k: v for k, v in cfg.models[name].items() if k not in ("model", "sweep")}}
    scale = opts.pop("img_scale", None)  # a fixed input scale (e.g. the one full.yaml chose on val), not swept
    if scale is not None:
        size = opts.get("patch_size") or opts.get("img_size")
        if not size:
            raise ValueError(f"{name} on {task}: img_scale needs the task's img_size or patch_size")
        opts["img_size"] = int(size * scale)
    return opts


def units(cfg: BenchmarkConfig, *, only_models: Optional[List[str]] = None,
          only_tasks: Optional[List[str]] = None) -> List[tuple]:
    """(task, model) pairs in priority order: models in config order, each on every task."""
    for group, known in (("models", cfg.models), ("tasks", cfg.tasks)):
        asked = {"models": only_models, "tasks": only_tasks}[group] or []
        unknown = sorted(set(asked) - set(known))
        if unknown:
            raise ValueError(f"{unknown} not in the config's {group} {list(known)}")
    return [(task, name) for name in cfg.models if not only_models or name in only_models
            for task in cfg.tasks if not only_tasks or task in only_tasks]


def selection_key(cfg: BenchmarkConfig) -> str:
    """The validation score that chooses a sweep point: the history column ``best.pt`` was chosen by."""
    return "val_cpm" if cfg.kind == "scans" else "val_auc"


def fmt_opts(opts: Dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in opts.items()) or "default"
