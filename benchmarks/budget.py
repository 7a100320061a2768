"""How long a benchmark config takes on the machine its CPU costs were measured on, from those costs.

    python benchmarks/budget.py --config benchmarks/full.yaml [--tasks lung-nodule-ct kidney-stone-ct]

Per (task, model): the sweep runs (each learning rate at native input, then each larger input scale at the best
one), plus one run for every seed after the first (the winning sweep run is seed 0), times epochs x training
images / the measured training images per second. Only the chosen input size is measured (the records say
which), so a model that chose 2x input is assumed 4x faster at 1x (pixels scale 4x). Evaluation, Grad-CAM and data
loading are left out: a lower bound.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from rensenet.benchmark import BenchmarkConfig, collect_records, unit_sweep
from rensenet.data import DataError
from rensenet.data.manifest import read_manifest, select_split


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="benchmarks/full.yaml")
    ap.add_argument("--tasks", nargs="+", help="only these tasks (default: all in the config)")
    args = ap.parse_args()
    cfg = BenchmarkConfig.load(args.config)
    # each unit's cost as its records carry it (runs here, else the published results.json), at the chosen size
    costs = {(r["task"], r["model"]): r for r in collect_records(cfg) if r.get("train_img_per_s")}
    print("| task | model | input px | train img/s | runs | CPU hours |")
    print("|---|---|---|---|---|---|")
    total, missing = 0.0, []
    for task in args.tasks or list(cfg.tasks):
        n_train = len(select_split(read_manifest(Path(cfg.data_root) / task, check_files=False), "train"))
        native = (cfg.tasks[task] or {}).get("img_size")
        task_hours = 0.0
        for name in cfg.models:
            if (task, name) not in costs:
                missing.append(f"{task} / {name}")
                continue
            speed, size = costs[task, name]["train_img_per_s"], costs[task, name]["img_size"]
            sweep = unit_sweep(cfg, task, name)
            n_lr = len(sweep.get("lr") or [None])
            scales = [s for s in sweep.get("img_scale") or [1] if s != 1]
            if n_lr + len(scales) > 1:  # swept: the learning rates at 1x, then each larger scale (s^2 the pixels)
                speed_1x = speed * (size / native) ** 2
                sweep_runs, sweep_seconds = n_lr + len(scales), (n_lr + sum(s * s for s in scales)) / speed_1x
            else:  # one setting, used as is: that run is seed 0
                sweep_runs, sweep_seconds = 1, 1 / speed
            runs = sweep_runs + len(cfg.seeds) - 1
            hours = cfg.epochs * n_train * (sweep_seconds + (len(cfg.seeds) - 1) / speed) / 3600
            task_hours += hours
            print(f"| {task} | {name} | {size} | {speed:.0f} | {runs} | {hours:.2f} |")
        print(f"| {task} | **all** | | | | **{task_hours:.1f}** |")
        total += task_hours
    print(f"\nTotal: {total:.1f} CPU hours ({cfg.epochs} epochs, {len(cfg.seeds)} seeds).")
    if missing:
        print("No cost measured yet (left out): " + ", ".join(missing))


if __name__ == "__main__":
    try:
        main()
    except (DataError, ValueError) as e:  # a missing dataset or a bad config: say which, without a traceback
        raise SystemExit(f"budget.py: {e}") from None
