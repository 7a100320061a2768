"""The validation sweep that chooses each model's learning rate and input scale, and what a grown grid makes stale."""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..base.io import write_json
from .config import COST_FIELDS, BenchmarkConfig, base_options, fmt_opts, selection_key, unit_sweep, units
from .cost import cost_path, cost_spec
from .processes import run_parallel
from .records import finished_record, published_records, record_path
from .runs import finished, train_run


def untried_points(chosen: Dict[str, Any], sweep: Dict[str, List[Any]], img_size: Optional[int]) -> List[str]:
    """Points of ``sweep`` that a kept ``chosen.json`` never tried ("lr=0.03", "img_scale=2"): the grid grew."""
    tried = [t["options"] for t in chosen.get("tried", [])]
    lrs = [lr for lr in sweep.get("lr") or [] if lr is not None]
    return [f"lr={lr}" for lr in lrs if not any(o.get("lr") == lr for o in tried)] + \
           [f"img_scale={s}" for s in sweep.get("img_scale") or [] if s != 1 and img_size
            and not any(o.get("img_size") == int(img_size * s) for o in tried)]


def choose_settings(cfg: BenchmarkConfig, task: str, name: str, spec: Dict[str, Any],
                    base_opts: Dict[str, Any], *, parallel_runs: int = 1, resweep: bool = False) -> Dict[str, Any]:
    """The learning rate and input scale with the best validation AUC (CPM for whole images; seed 0), kept in
    ``sweep/<task>/<name>``.

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
        if earlier is not None and not finished(run, epochs):  # tried before, its run not here (another clone)
            return earlier
        train_run(cfg, task, spec, run, epochs=epochs, seed=0, options={**base_opts, **opts})
        return {"options": opts, "run": str(run), key: float(pd.read_csv(run / "history.csv")[key].max())}

    key = selection_key(cfg)  # val AUC, or val CPM for whole images
    tried = run_parallel(trial, [{"lr": lr} if lr is not None else {} for lr in lrs], parallel_runs)
    best_lr = max(tried, key=lambda t: t[key])["options"]
    tried += run_parallel(trial, [{**best_lr, "img_size": int(base_opts["img_size"] * s)} for s in scales if s != 1],
                  parallel_runs)
    best = max(tried, key=lambda t: t[key])
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
                stale.append((task, name, seed, f"trained with {fmt_opts(used)}, now chosen {fmt_opts(chosen['options'])}"))
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
        folder = record_path(cfg, task, name, seed).parent
        dest = Path(cfg.out) / "superseded" / task / name / f"seed{seed}"
        n = 1
        while dest.exists():
            dest, n = dest.with_name(f"seed{seed}-{n}"), n + 1
        dest.parent.mkdir(parents=True, exist_ok=True)
        if folder.exists():
            folder.rename(dest)
        record = keep.pop((task, name, seed), None)
        keep_cost(cfg, record)  # a record trained here has its cost in the cache already
        if record is not None:
            write_json(dest / ("record.json" if not (dest / "record.json").exists() else "published_record.json"),
                       {**record, "superseded": why})
    write_json(cfg.results, list(keep.values()))


def keep_cost(cfg: BenchmarkConfig, record: Optional[Dict[str, Any]]) -> None:
    """A set-aside record's cost still holds for a retrained run of the same model and input (:func:`_cost_spec`),
    so it goes to the cost cache if that has none: the retrained seeds are not measured on another machine."""
    if record is None or any(f not in record for f in COST_FIELDS):
        return
    path = cost_path(cfg, record["task"], record["model"])
    if not path.exists():
        write_json(path, {**{f: record[f] for f in COST_FIELDS}, "cost_machine": record.get("cost_machine"),
                          "spec": cost_spec(record)})
