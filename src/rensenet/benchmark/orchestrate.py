"""Running the benchmark: every (task, model) unit, its sweep, seeds, evaluation, explanation and cost."""
from __future__ import annotations

import json
import os
import sys
from datetime import date
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..base.io import write_json
from .anchor import anchor_seed
from .config import COST_FIELDS, BenchmarkConfig, base_options, selection_key, units
from .cost import model_cost
from .processes import run_child, run_parallel
from .records import collect_records, finished_record, record_path, save_results
from .runs import finished, train_run
from .scan_costs import estimate_scan_budget
from .scan_units import scan_record
from .sweep import choose_settings


def run_unit(cfg: BenchmarkConfig, task: str, name: str, *, cost: bool = True, parallel_runs: int = 1) -> None:
    """Sweep, train, evaluate and explain every seed of one (task, model); each finished seed writes record.json.

    ``parallel_runs`` trains that many runs of this unit at once (sweep points, then seeds), for a GPU that
    one small run leaves mostly idle; evaluation follows run by run.
    """
    from ..evaluation.report import evaluate
    from ..explanation import explain

    spec = cfg.models[name]
    if spec.get("detector"):  # the anchor: trained and scored by its own code, recorded like the classifiers
        for seed in cfg.seeds:
            if finished_record(cfg, task, name, seed) is None:
                print(f"[{task} / {name} / seed {seed}] detector", flush=True)
                path = record_path(cfg, task, name, seed)
                record = anchor_seed(cfg, task, name, seed, out=path.parent)
                write_json(path, {**record, "timm_model": spec["model"], "date": date.today().isoformat()})
                save_results(cfg)
        return
    data = str(Path(cfg.data_root) / task)
    train_opts = base_options(cfg, task, name)
    seeds = [seed for seed in cfg.seeds if finished_record(cfg, task, name, seed) is None]
    if not seeds:
        return
    chosen = choose_settings(cfg, task, name, spec, train_opts, parallel_runs=parallel_runs)
    options = {**train_opts, **chosen["options"]}

    def run_dir(seed: int) -> Path:
        sweep_run = Path(chosen["run"]) if seed == 0 and chosen.get("run") else None
        return sweep_run if sweep_run and (sweep_run / "best.pt").exists() else record_path(cfg, task, name, seed).parent / "run"

    def train(seed: int) -> Dict[str, Any]:
        print(f"[{task} / {name} / seed {seed}] training", flush=True)
        return train_run(cfg, task, spec, run_dir(seed), epochs=cfg.epochs, seed=seed, options=options)

    def finish(seed: int) -> None:  # evaluate, explain and record one seed (training it first if it has not run)
        timing = train(seed)  # at once when trained before
        rec_path = record_path(cfg, task, name, seed)
        out, run = rec_path.parent, run_dir(seed)
        ckpt = run / "best.pt"
        if cfg.kind == "scans":  # FROC of `rensenet scan` on the whole test images, and the cost of scanning
            record = scan_record(cfg, task, name, seed, run=run, out=out, timing=timing, options=options)
            record.update(timm_model=spec["model"], date=date.today().isoformat(), **_sweep_of(chosen, cfg))
            write_json(rec_path, record)
            save_results(cfg)
            return
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
        record.update(_sweep_of(chosen, cfg))
        write_json(rec_path, record)
        if cost:
            model_cost(cfg, task, name, record)
        save_results(cfg)  # after every run: safe to interrupt

    # runs that finished before (the sweep's winner, an interrupted benchmark) are recorded before any trains
    ready = [seed for seed in seeds if finished(run_dir(seed), cfg.epochs)]
    rest = [seed for seed in seeds if seed not in ready]
    for seed in ready:
        finish(seed)
    if parallel_runs > 1:
        run_parallel(train, rest, parallel_runs)
    for seed in rest:
        finish(seed)


def _sweep_of(chosen: Dict[str, Any], cfg: BenchmarkConfig) -> Dict[str, Any]:
    """The sweep choice, to travel with a record (``out`` is not committed)."""
    if not chosen.get("tried"):
        return {}
    key = selection_key(cfg)
    return {"sweep": {"chosen": chosen["options"],
                      "tried": [{"options": t["options"], key: t[key]} for t in chosen["tried"]]}}


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
                run_child(cmd, logs / f"{task}--{name}.log", env=env)
            except RuntimeError as e:
                return f"{task} / {name}: {e}"
            return None

        with ThreadPoolExecutor(jobs) as pool:
            failures = [f for f in pool.map(one, todo) if f]
        if failures:
            print("failed units:\n  " + "\n  ".join(failures), file=sys.stderr)
    return save_results(cfg)


def add_costs(cfg: BenchmarkConfig) -> List[Dict[str, Any]]:
    """Measure on this machine the cost of every (task, model) that has records but no cost yet (for ``kind:
    scans``, the budget of every unit before it runs: :mod:`rensenet.benchmark.scan_costs`).

    A cost the records already carry (measured here before, or published in ``results.json``) is kept.
    """
    if cfg.kind == "scans":  # each record carries the cost of its own scan; what is measured here is the budget
        estimate_scan_budget(cfg)
        return save_results(cfg)
    todo: Dict[tuple, Dict[str, Any]] = {}
    for record in collect_records(cfg):
        if any(f not in record for f in COST_FIELDS):
            todo.setdefault((record["task"], record["model"]), record)
    for key, record in todo.items():
        print(f"[{key[0]} / {key[1]}] cost", flush=True)
        model_cost(cfg, *key, record)
    return save_results(cfg)
