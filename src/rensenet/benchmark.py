"""``rensenet benchmark --config FILE``: every model on every task, same splits, seeds, epochs and recipe.

Each (task, model, seed) trains in its own process, then is evaluated and explained; its ``record.json`` is
written at once, so an interrupted benchmark resumes where it stopped and a finished run is never redone.
``results.json`` gathers the records, each with its model's CPU cost (measured once per task and model, in a
fresh process), and ``report`` turns them into Markdown tables and figures.

``results.json`` is also what a clone of the repository has of the runs (``out`` is not committed): its records,
with the sweep that chose each one's settings, count as finished, so a fresh clone rewrites the report from them
and never retrains, or drops, a published result.
"""
from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
import warnings
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

COST_FIELDS = ("params", "gflops", "train_img_per_s", "infer_ms_batch1", "infer_img_per_s_batch64", "peak_train_mem_mb")


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
    preamble: Optional[str] = None  # Markdown file put at the top of the report (commands, machine, choices)
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


def _run_child(cmd: List[str], log: Path, env: Optional[Dict[str, str]] = None) -> tuple:
    """Run ``cmd`` as a child process; (seconds, peak resident memory of that child in MB)."""
    start = time.time()
    with open(log, "a") as f:
        f.write("$ " + " ".join(shlex.quote(c) for c in cmd) + "\n")
        f.flush()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"child process failed (exit {code}); its command and output are in {log}")
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


def _cost_child() -> None:
    """Entry of the cost process: build the model from argv[1] (JSON), measure, print one JSON line."""
    from .training.checkpoint import create_model

    spec = json.loads(sys.argv[1])
    model = create_model(spec["model"], num_classes=spec["num_classes"], in_chans=spec["in_chans"],
                         model_kwargs=spec.get("model_kwargs"))
    print(json.dumps(measure_cost(model, in_chans=spec["in_chans"], img_size=spec["img_size"])))


def _cost_spec(record: Dict[str, Any]) -> Dict[str, Any]:
    """What a cost depends on: the model, its options and the input it was measured at."""
    spec = {k: record[k] for k in ("num_classes", "in_chans", "img_size")}
    spec.update(model=record["timm_model"], model_kwargs=record["train_options"].get("model_kwargs") or {})
    return spec


def _cost_path(cfg: BenchmarkConfig, task: str, name: str) -> Path:
    """Where one (task, model)'s measured cost is cached, with the spec it was measured for."""
    return Path(cfg.out) / "costs" / task / f"{name}.json"


def _cached_cost(path: Path, spec: Dict[str, Any]) -> Optional[Dict[str, Any]]:
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
    path = _cost_path(cfg, task, name)
    spec = _cost_spec(record)
    cached = _cached_cost(path, spec)
    if cached is not None:
        return cached
    path.parent.mkdir(parents=True, exist_ok=True)
    log = path.with_suffix(".log")
    log.unlink(missing_ok=True)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    _, peak_mb = _run_child([sys.executable, "-c", "from rensenet.benchmark import _cost_child; _cost_child()",
                             json.dumps(spec)], log, env=env)
    cost = json.loads(log.read_text().strip().splitlines()[-1])
    cost.update(peak_train_mem_mb=round(peak_mb, 1), cost_machine=machine_description(cpu=True))
    write_json(path, {**cost, "spec": spec})
    return cost


def cpu_model() -> str:
    """The CPU's model name ("AMD EPYC", from /proc/cpuinfo on Linux), else the architecture: two machines with
    the same core count can differ 3x in speed, so a cost must say which one measured it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({platform.machine()})"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description(*, cpu: bool = False) -> str:
    if torch.cuda.is_available() and not cpu:
        return f"{torch.cuda.get_device_name(0)}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
    return f"{cpu_model()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"


def _train_cmd(cfg: BenchmarkConfig, task: str, spec: Dict[str, Any], out: Path, *, epochs: int, seed: int,
               options: Dict[str, Any]) -> List[str]:
    cmd = [sys.executable, "-m", "rensenet", "train", "--data", str(Path(cfg.data_root) / task),
           "--model", spec["model"], "--out", str(out), "--epochs", str(epochs), "--seed", str(seed),
           "--no-progress", *_options(options)]
    return cmd + (["--resume"] if (out / "last.pt").exists() else [])


def _finished(run: Path, epochs: int) -> bool:
    """All epochs ran and were timed (the checkpoint may be gone: results copied from another machine)."""
    import pandas as pd

    return (run / "timing.json").exists() and (run / "history.csv").exists() and \
        len(pd.read_csv(run / "history.csv")) >= epochs


def _train(cfg: BenchmarkConfig, task: str, spec: Dict[str, Any], run: Path, *, epochs: int, seed: int,
           options: Dict[str, Any]) -> Dict[str, Any]:
    """Train one run unless it finished before; its time, peak memory and command are kept in run/timing.json."""
    timing = run / "timing.json"
    if _finished(run, epochs):
        return json.loads(timing.read_text())
    run.mkdir(parents=True, exist_ok=True)
    cmd = _train_cmd(cfg, task, spec, run, epochs=epochs, seed=seed, options=options)
    seconds, peak_mb = _run_child(cmd, run.parent / f"{run.name}.log")
    info = {"train_seconds": round(seconds, 1), "train_peak_rss_mb": round(peak_mb, 1),
            "command": " ".join(shlex.quote(c) for c in cmd[1:]), "train_machine": machine_description()}
    write_json(timing, info)
    return info


def _map(fn, items: List[Any], width: int) -> List[Any]:
    """``[fn(x) for x in items]``, up to ``width`` at once (each call waits on its own child process)."""
    if width <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(width, len(items))) as pool:
        return list(pool.map(fn, items))


def unit_sweep(cfg: BenchmarkConfig, task: str, name: str) -> Dict[str, List[Any]]:
    """The values swept for one (task, model): the config's, overridden by the model's, then by the task's."""
    return {**cfg.sweep, **(cfg.models[name].get("sweep") or {}), **((cfg.tasks[task] or {}).get("sweep") or {})}


def base_options(cfg: BenchmarkConfig, task: str, name: str) -> Dict[str, Any]:
    """The `rensenet train` options of one (task, model) before its sweep: recipe, then task, then model entry."""
    task_opts = {k: v for k, v in (cfg.tasks[task] or {}).items() if k != "sweep"}  # sweep: unit_sweep's
    return {**cfg.train, **task_opts, **{k: v for k, v in cfg.models[name].items() if k not in ("model", "sweep")}}


def untried_points(chosen: Dict[str, Any], sweep: Dict[str, List[Any]], img_size: Optional[int]) -> List[str]:
    """Points of ``sweep`` that a kept ``chosen.json`` never tried ("lr=0.03", "img_scale=2"): the grid grew."""
    tried = [t["options"] for t in chosen.get("tried", [])]
    lrs = [lr for lr in sweep.get("lr") or [] if lr is not None]
    return [f"lr={lr}" for lr in lrs if not any(o.get("lr") == lr for o in tried)] + \
           [f"img_scale={s}" for s in sweep.get("img_scale") or [] if s != 1 and img_size
            and not any(o.get("img_size") == int(img_size * s) for o in tried)]


def choose_settings(cfg: BenchmarkConfig, task: str, name: str, spec: Dict[str, Any],
                    base_opts: Dict[str, Any], *, parallel_runs: int = 1, resweep: bool = False) -> Dict[str, Any]:
    """The learning rate and input scale with the best validation AUC (seed 0), kept in ``sweep/<task>/<name>``.

    :func:`unit_sweep` lists the values: ``lr`` first (at scale 1), then ``img_scale``
    (x the task's ``img_size``, for networks designed for 224 px images) at the best ``lr``. Test data is
    never looked at. Returns ``{"options": {...}, "run": path}``: when the sweep trains as many epochs as the
    benchmark, the winning sweep run *is* the seed-0 run and is not trained again. ``parallel_runs`` trains
    that many learning rates at once. A kept choice is returned as it is, unless ``resweep``: then the points it
    never tried run too (finished runs are reused) and the choice is made again.
    """
    import pandas as pd

    sweep = unit_sweep(cfg, task, name)
    lrs, scales = sweep.get("lr") or [base_opts.get("lr")], sweep.get("img_scale") or [1]
    if len(lrs) * len(scales) <= 1:  # nothing to choose: a single value is simply used
        fixed = {"lr": lrs[0]} if lrs[0] is not None else {}
        if scales[0] != 1:
            fixed["img_size"] = int(base_opts["img_size"] * scales[0])
        return {"options": fixed, "run": None}
    root = Path(cfg.out) / "sweep" / task / name
    kept = kept_sweep(cfg, task, name)
    if kept is not None and not resweep:
        chosen = kept
        missing = untried_points(chosen, sweep, base_opts.get("img_size"))
        if missing:  # the config's grid grew after the choice: say so rather than silently keep the old one
            warnings.warn(f"{task} / {name}'s sweep choice was made without {', '.join(missing)}, which the config now "
                          f"sweeps; `rensenet benchmark --sweep-only` runs them (finished sweep runs are reused)",
                          stacklevel=2)
        return chosen
    if any(s != 1 for s in scales) and "img_size" not in base_opts:
        raise ValueError(f"task {task!r} needs img_size in the config to sweep img_scale")
    epochs = cfg.sweep_epochs or cfg.epochs
    kept_points = {json.dumps(t["options"], sort_keys=True): t for t in (kept or {}).get("tried", [])}

    def trial(opts: Dict[str, Any]) -> Dict[str, Any]:
        run = root / "-".join(f"{k}{v}" for k, v in opts.items())
        earlier = kept_points.get(json.dumps(opts, sort_keys=True))
        if earlier is not None and not _finished(run, epochs):  # tried before, its run not here (another clone)
            return earlier
        _train(cfg, task, spec, run, epochs=epochs, seed=0, options={**base_opts, **opts})
        return {"options": opts, "run": str(run), "val_auc": float(pd.read_csv(run / "history.csv")["val_auc"].max())}

    tried = _map(trial, [{"lr": lr} if lr is not None else {} for lr in lrs], parallel_runs)
    best_lr = max(tried, key=lambda t: t["val_auc"])["options"]
    tried += _map(trial, [{**best_lr, "img_size": int(base_opts["img_size"] * s)} for s in scales if s != 1],
                  parallel_runs)
    best = max(tried, key=lambda t: t["val_auc"])
    chosen = {"options": best["options"], "run": best.get("run") if epochs == cfg.epochs else None, "tried": tried}
    write_json(root / "chosen.json", chosen)
    return chosen


def kept_sweep(cfg: BenchmarkConfig, task: str, name: str) -> Optional[Dict[str, Any]]:
    """The sweep choice of one (task, model): its ``chosen.json``, else the one its published records carry."""
    path = Path(cfg.out) / "sweep" / task / name / "chosen.json"
    if path.exists():
        return json.loads(path.read_text())
    carried = [r["sweep"] for r in published_records(cfg).values()
               if r["task"] == task and r["model"] == name and r.get("sweep")]
    return {"options": carried[0]["chosen"], "run": None, "tried": carried[0]["tried"]} if carried else None


def sweep_units(cfg: BenchmarkConfig, *, only_models: Optional[List[str]] = None,
                only_tasks: Optional[List[str]] = None, parallel_runs: int = 1, drop_stale: bool = False) -> List[str]:
    """Run every sweep point the config lists that has not run, finished units included, and choose again.

    For a grid that grew after its units finished. Returns one line per recorded seed that was trained at
    another choice than the new one; ``drop_stale`` sets those aside (:func:`set_aside`), so that running the
    benchmark again retrains them at the new choice.
    """
    stale = []
    for task, name in units(cfg, only_models=only_models, only_tasks=only_tasks):
        base = base_options(cfg, task, name)
        chosen = choose_settings(cfg, task, name, cfg.models[name], base, parallel_runs=parallel_runs, resweep=True)
        want = {**base, **chosen["options"]}
        for seed in cfg.seeds:
            record = finished_record(cfg, task, name, seed)
            used = (record or {}).get("train_options", want)
            if any(used.get(k) != want.get(k) for k in ("lr", "img_size")):
                stale.append((task, name, seed, f"trained with {_fmt_opts(used)}, now chosen {_fmt_opts(chosen['options'])}"))
    if drop_stale and stale:
        set_aside(cfg, stale)
    where = "set aside" if drop_stale else "stale"
    return [f"{task} / {name} / seed {seed} ({where}): {why}" for task, name, seed, why in stale]


def set_aside(cfg: BenchmarkConfig, seeds: List[tuple]) -> None:
    """Take superseded (task, model, seed, reason) results out of the table, so the benchmark trains them again.

    A seed folder moves to ``<out>/superseded/<task>/<model>/seed<k>`` (an earlier one there gets a number); a
    record that exists only in ``results.json`` (a fresh clone) is written there as ``record.json``, with the reason,
    before it leaves ``results.json``: nothing is deleted.
    """
    keep = published_records(cfg)
    for task, name, seed, why in seeds:
        folder = _record_path(cfg, task, name, seed).parent
        dest = Path(cfg.out) / "superseded" / task / name / f"seed{seed}"
        n = 1
        while dest.exists():
            dest, n = dest.with_name(f"seed{seed}-{n}"), n + 1
        dest.parent.mkdir(parents=True, exist_ok=True)
        if folder.exists():
            folder.rename(dest)
        record = keep.pop((task, name, seed), None)
        _keep_cost(cfg, record)  # a record trained here has its cost in the cache already
        if record is not None:
            write_json(dest / ("record.json" if not (dest / "record.json").exists() else "published_record.json"),
                       {**record, "superseded": why})
    write_json(cfg.results, list(keep.values()))


def _keep_cost(cfg: BenchmarkConfig, record: Optional[Dict[str, Any]]) -> None:
    """A set-aside record's cost still holds for a retrained run of the same model and input (:func:`_cost_spec`),
    so it goes to the cost cache if that has none: the retrained seeds are not measured on another machine."""
    if record is None or any(f not in record for f in COST_FIELDS):
        return
    path = _cost_path(cfg, record["task"], record["model"])
    if not path.exists():
        write_json(path, {**{f: record[f] for f in COST_FIELDS}, "cost_machine": record.get("cost_machine"),
                          "spec": _cost_spec(record)})


def _record_path(cfg: BenchmarkConfig, task: str, name: str, seed: int) -> Path:
    return Path(cfg.out) / task / name / f"seed{seed}" / "record.json"


def published_records(cfg: BenchmarkConfig) -> Dict[tuple, Dict[str, Any]]:
    """The records in ``cfg.results`` by (task, model, seed): what a clone has of runs it did not train."""
    path = Path(cfg.results)
    if not path.exists():
        return {}
    try:
        records = json.loads(path.read_text())
        return {(r["task"], r["model"], r["seed"]): r for r in records}
    except (json.JSONDecodeError, TypeError, KeyError) as e:
        raise ValueError(f"{path}: not a benchmark results file (a JSON list of records with task, model and seed: "
                         f"{e!r}); restore it with `git checkout {path}` or point `results:` elsewhere") from None


def finished_record(cfg: BenchmarkConfig, task: str, name: str, seed: int,
                    published: Optional[Dict[tuple, Dict[str, Any]]] = None) -> Optional[Dict[str, Any]]:
    """The record of a finished run: its ``record.json`` under ``out``, else the published one (from
    ``published`` when the caller has read them already), else None."""
    path = _record_path(cfg, task, name, seed)
    if path.exists():
        return json.loads(path.read_text())
    return (published_records(cfg) if published is None else published).get((task, name, seed))


def collect_records(cfg: BenchmarkConfig, *, with_cost: bool = True) -> List[Dict[str, Any]]:
    """Every finished run's record, in config order, with its model's cost where it was measured.

    A run trained here (``record.json``) replaces its published record; published records of runs not trained
    here are kept, those outside the config included (after the config's), so rewriting ``results.json``
    never loses one.
    """
    published = published_records(cfg)
    records = []
    for task in cfg.tasks:
        for name in cfg.models:
            for seed in cfg.seeds:
                record = finished_record(cfg, task, name, seed, published)
                published.pop((task, name, seed), None)
                if record is not None:
                    cost = _cached_cost(_cost_path(cfg, task, name), _cost_spec(record))
                    if with_cost and cost:
                        record.update(cost)
                    records.append(record)
    return records + list(published.values())


def save_results(cfg: BenchmarkConfig) -> List[Dict[str, Any]]:
    """Every finished run's record, with costs, written to ``cfg.results`` (the issue's results.json) and returned."""
    records = collect_records(cfg)
    write_json(cfg.results, records)
    return records


def run_unit(cfg: BenchmarkConfig, task: str, name: str, *, cost: bool = True, parallel_runs: int = 1) -> None:
    """Sweep, train, evaluate and explain every seed of one (task, model); each finished seed writes record.json.

    ``parallel_runs`` trains that many runs of this unit at once (sweep points, then seeds), for a GPU that
    one small run leaves mostly idle; evaluation follows run by run.
    """
    from .evaluation.report import evaluate
    from .explanation import explain

    spec = cfg.models[name]
    data = str(Path(cfg.data_root) / task)
    train_opts = base_options(cfg, task, name)
    seeds = [seed for seed in cfg.seeds if finished_record(cfg, task, name, seed) is None]
    if not seeds:
        return
    chosen = choose_settings(cfg, task, name, spec, train_opts, parallel_runs=parallel_runs)
    options = {**train_opts, **chosen["options"]}

    def run_dir(seed: int) -> Path:
        sweep_run = Path(chosen["run"]) if seed == 0 and chosen.get("run") else None
        return sweep_run if sweep_run and (sweep_run / "best.pt").exists() else _record_path(cfg, task, name, seed).parent / "run"

    def train(seed: int) -> Dict[str, Any]:
        print(f"[{task} / {name} / seed {seed}] training", flush=True)
        return _train(cfg, task, spec, run_dir(seed), epochs=cfg.epochs, seed=seed, options=options)

    def finish(seed: int) -> None:  # evaluate, explain and record one seed (training it first if it has not run)
        timing = train(seed)  # at once when trained before
        record_path = _record_path(cfg, task, name, seed)
        out, run = record_path.parent, run_dir(seed)
        ckpt = run / "best.pt"
        metrics = evaluate(ckpt, data, split="test", out=out / "eval", n_boot=cfg.n_boot)
        loc = explain(ckpt, data, out=out / "explain", **{"split": "test", "n_boot": cfg.n_boot, **cfg.explain})
        run_cfg = json.loads((run / "config.json").read_text())
        small = [r for r in metrics.get("sensitivity_by_lesion_size", []) if r["tercile"] == "small"]
        summary = loc.localization
        record = {
            "task": task, "model": name, "seed": seed,
            **{k: metrics[k]["value"] for k in ("auc", "accuracy", "sensitivity", "specificity", "f1")},
            "small_lesion_sensitivity": small[0]["sensitivity"] if small else None,
            "pointing_game": summary.get("pointing_game", {}).get("value"),
            "energy_lift": summary.get("energy_lift", {}).get("value"),
            "epochs": cfg.epochs, "img_size": run_cfg["img_size"], "in_chans": run_cfg["in_chans"],
            "num_classes": run_cfg["num_classes"], **timing, "run": str(run),
            "timm_model": spec["model"], "train_options": options, "cam": summary.get("method"),
            "date": date.today().isoformat(),
        }
        if chosen.get("tried"):  # the choice travels with the record (``out`` is not committed)
            record["sweep"] = {"chosen": chosen["options"],
                               "tried": [{"options": t["options"], "val_auc": t["val_auc"]} for t in chosen["tried"]]}
        write_json(record_path, record)
        if cost:
            model_cost(cfg, task, name, record)
        save_results(cfg)  # after every run: safe to interrupt

    # runs that finished before (the sweep's winner, an interrupted benchmark) are recorded before any trains
    ready = [seed for seed in seeds if _finished(run_dir(seed), cfg.epochs)]
    rest = [seed for seed in seeds if seed not in ready]
    for seed in ready:
        finish(seed)
    if parallel_runs > 1:
        _map(train, rest, parallel_runs)
    for seed in rest:
        finish(seed)


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


def run_benchmark(cfg: BenchmarkConfig, *, only_models: Optional[List[str]] = None,
                  only_tasks: Optional[List[str]] = None, cost: bool = True, jobs: int = 1,
                  parallel_runs: int = 1, config_path: Optional[str] = None) -> List[Dict[str, Any]]:
    """Train, evaluate, explain and cost every (task, model, seed) that has no record yet.

    ``jobs > 1`` runs that many (task, model) units at once, each in its own ``rensenet benchmark`` process
    (``config_path`` is needed for that) with its share of the CPU threads: for a GPU, or a machine with many
    cores; ``parallel_runs`` is passed on to :func:`run_unit`. ``cost=False`` leaves the CPU cost to a later
    ``--costs-only`` pass on the machine it should describe.
    """
    todo = units(cfg, only_models=only_models, only_tasks=only_tasks)
    if jobs <= 1:
        for task, name in todo:
            run_unit(cfg, task, name, cost=cost, parallel_runs=parallel_runs)
    else:
        if config_path is None:
            raise ValueError("jobs > 1 needs config_path (each unit runs as its own `rensenet benchmark`)")
        from concurrent.futures import ThreadPoolExecutor

        env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // (jobs * parallel_runs)))}
        logs = Path(cfg.out) / "logs"
        logs.mkdir(parents=True, exist_ok=True)

        def one(unit: tuple) -> Optional[str]:
            task, name = unit
            cmd = [sys.executable, "-m", "rensenet", "benchmark", "--config", config_path, "--tasks", task,
                   "--models", name, "--no-report", "--parallel-runs", str(parallel_runs)] + ([] if cost else ["--no-cost"])
            try:
                _run_child(cmd, logs / f"{task}--{name}.log", env=env)
            except RuntimeError as e:
                return f"{task} / {name}: {e}"
            return None

        with ThreadPoolExecutor(jobs) as pool:
            failures = [f for f in pool.map(one, todo) if f]
        if failures:
            print("failed units:\n  " + "\n  ".join(failures), file=sys.stderr)
    return save_results(cfg)


def add_costs(cfg: BenchmarkConfig) -> List[Dict[str, Any]]:
    """Measure on this machine the cost of every (task, model) that has records but no cost yet.

    A cost the records already carry (measured here before, or published in ``results.json``) is kept.
    """
    todo: Dict[tuple, Dict[str, Any]] = {}
    for record in collect_records(cfg):
        if any(f not in record for f in COST_FIELDS):
            todo.setdefault((record["task"], record["model"]), record)
    for key, record in todo.items():
        print(f"[{key[0]} / {key[1]}] cost", flush=True)
        model_cost(cfg, *key, record)
    return save_results(cfg)


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


def heatmap_comparison(cfg: BenchmarkConfig, records: List[Dict[str, Any]], task: str, *, n: int = 8) -> Optional[Path]:
    """Every model's heatmap (its default CAM) on the same first ``n`` test lesions, side by side.

    Each model is shown from its lowest seed with the saved panel (``explain/lesions.npz``, which travels with
    the results) or, failing that, a checkpoint. A model with neither (a record published by another clone) is
    left out of a new figure, but an existing figure is not redrawn with fewer models (None), nor is one drawn
    from no panel at all.
    """
    from .explanation import compare_panels, explain_model, lesion_panel, load_lesion_panel, save_lesion_panel

    data = str(Path(cfg.data_root) / task)
    panels = {}
    shown = [name for name in cfg.models if any(r["task"] == task and r["model"] == name for r in records)]
    for name in shown:
        for r in sorted((r for r in records if r["task"] == task and r["model"] == name), key=lambda r: r["seed"]):
            saved = _record_path(cfg, task, name, r["seed"]).parent / "explain" / "lesions.npz"
            ckpt = Path(r["run"]) / "best.pt"
            if not saved.exists() and ckpt.exists():
                e = explain_model(ckpt, data, **{"split": "test", **cfg.explain, "faithfulness": False, "n_boot": 10})
                if not len(e.lesion_rows):
                    return None
                save_lesion_panel(saved, lesion_panel(e, n))
            if saved.exists():
                panels[f"{name} (seed {r['seed']})"] = {k: v[:n] for k, v in load_lesion_panel(saved).items()}
                break
    figure = Path(cfg.report).parent / f"heatmaps_{task}.png"
    if not panels or (len(panels) < len(shown) and figure.exists()):
        return None
    path = compare_panels(panels, Path(cfg.report).parent)
    return path.replace(figure)


def _sweep_table(cfg: BenchmarkConfig, task: str) -> List[str]:
    """The validation sweep behind each model's settings, so the choices are on record."""
    rows = []
    for name in cfg.models:
        chosen = kept_sweep(cfg, task, name)
        if chosen is not None:
            tried = ", ".join(f"{_fmt_opts(t['options'])}: {t['val_auc']:.3f}" for t in chosen["tried"])
            missing = untried_points(chosen, unit_sweep(cfg, task, name), base_options(cfg, task, name).get("img_size"))
            tried += f"; not tried: {', '.join(missing)}" if missing else ""
            rows.append(f"| {name} | {_fmt_opts(chosen['options'])} | {tried} |")
    if not rows:
        return []
    return ["Settings chosen on validation AUC (seed 0):", "", "| model | chosen | tried: best val AUC |",
            "|---|---|---|", *rows, ""]


def _fmt_opts(opts: Dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in opts.items()) or "default"


def _plot_auc_vs_gflops(path: Path, task: str, means: Dict[str, Dict[str, float]]) -> None:
    """Mean test AUC (bars: std over seeds) against GFLOPs, one marker per model, named in a legend beside the axes:
    models of similar cost cluster, and text labels on the points would print over each other."""
    import matplotlib.pyplot as plt

    from .io import save_figure

    fig, ax = plt.subplots(figsize=(7.5, 4))
    colors, markers = plt.get_cmap("tab20").colors, "osD^v<>ph*"
    measured = [(name, m) for name, m in means.items() if m["gflops"] > 0]  # cost not measured yet: --no-cost
    for i, (name, m) in enumerate(measured):
        ax.errorbar(m["gflops"], m["auc"], yerr=m["auc_std"], fmt=markers[i % len(markers)], color=colors[i % 20],
                    capsize=2, markersize=6, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("GFLOPs per image")
    ax.set_ylabel("test AUC (mean, std over seeds)")
    ax.set_title(task)
    ax.grid(alpha=0.3)
    if measured:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    fig.tight_layout()
    save_figure(path, fig, dpi=130)


def report(cfg: BenchmarkConfig, records: List[Dict[str, Any]], *, reference: str = "rensenet_s") -> str:
    """Markdown: mean +- std over seeds per task and model, the paired test against the best baseline, figures."""
    import matplotlib

    matplotlib.use("Agg")
    cols = ["auc", "accuracy", "sensitivity", "specificity", "f1", "small_lesion_sensitivity", "pointing_game",
            "energy_lift", "params", "gflops", "train_img_per_s", "infer_ms_batch1", "infer_img_per_s_batch64",
            "peak_train_mem_mb", "train_seconds"]
    train_on = sorted({r.get("train_machine", "?") for r in records})
    cost_on = sorted({r["cost_machine"] for r in records if r.get("cost_machine")})
    preamble = Path(cfg.preamble).read_text().rstrip() + "\n" if cfg.preamble and Path(cfg.preamble).exists() else ""
    lines = [preamble or f"# Benchmark ({date.today().isoformat()})", "", "## Tables (written by `rensenet benchmark`)", "",
             f"{cfg.epochs} epochs, seeds {cfg.seeds}, test split; mean +- sample std over seeds (n = seeds that finished).",
             f"Trained and evaluated on: {'; '.join(train_on) or '-'}. Cost columns (params, GFLOPs, throughput, "
             f"latency, peak memory) measured on: {'; '.join(cost_on) or '-'}.", ""]
    report_dir = Path(cfg.report).parent
    for task in cfg.tasks:
        rows = [r for r in records if r["task"] == task]
        if not rows:
            continue
        lines += [f"### {task}", "", "| model | n | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
        means = {}
        for name in cfg.models:
            rs = [r for r in rows if r["model"] == name]
            if not rs:
                continue
            cells = []
            for c in cols:
                v = np.array([r[c] for r in rs if r.get(c) is not None], dtype=float)
                spread = len(v) > 1 and c not in COST_FIELDS  # a cost is one measurement per (task, model)
                cells.append("-" if not len(v) else f"{v.mean():.3g} +- {v.std(ddof=1):.2g}" if spread else f"{v.mean():.3g}")
            means[name] = {c: np.mean([r[c] for r in rs if r.get(c) is not None] or [np.nan]) for c in cols}
            means[name]["auc_std"] = float(np.std([r["auc"] for r in rs], ddof=1)) if len(rs) > 1 else 0.0
            lines.append(f"| {name} | {len(rs)} | " + " | ".join(cells) + " |")
        baselines = [m for m in means if not m.startswith("rensenet") and not m.startswith("ecm")]
        others = [m for m in means if m != reference]
        if reference in means and others:
            # the best plain baseline, and the best model of any kind when that is another one (an ECM hybrid)
            best = {"the best baseline": max(baselines, key=lambda m: means[m]["auc"])} if baselines else {}
            top = max(others, key=lambda m: means[m]["auc"])
            if top not in best.values():
                best["the best other model"] = top
            for label, other in best.items():
                test = paired_test(records, task, reference, other)
                if test:
                    lines += ["", f"{reference} vs {label} on AUC ({other}): difference {test['mean_difference']:+.4f}, "
                                  f"paired t-test over {test['n_seeds']} seeds p = {test['p_value']:.3g}."]
        _plot_auc_vs_gflops(report_dir / f"auc_vs_gflops_{task}.png", task, means)
        lines += ["", f"![AUC vs GFLOPs](auc_vs_gflops_{task}.png)", ""]
        heatmaps = report_dir / f"heatmaps_{task}.png"
        if heatmap_comparison(cfg, rows, task) is not None or heatmaps.exists():
            lines += [f"![Heatmaps of every model on the same test lesions]({heatmaps.name})", ""]
        lines += _sweep_table(cfg, task)
    text = "\n".join(lines) + "\n"
    write_text(cfg.report, text)
    return text
