"""``rensenet benchmark``: every model on every task, resumable (see docs/benchmark.md)."""
from __future__ import annotations

import argparse


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("benchmark", help="train, evaluate, explain and cost every model on every task (resumable)")
    p.add_argument("--config", required=True, help="YAML file, e.g. benchmarks/full.yaml")
    p.add_argument("--models", nargs="+", default=None, help="only these model entries (run in pieces)")
    p.add_argument("--tasks", nargs="+", default=None, help="only these tasks")
    p.add_argument("--jobs", type=int, default=1,
                   help="(task, model) units run at once, each in its own process (for a GPU or many cores)")
    p.add_argument("--parallel-runs", type=int, default=1,
                   help="training runs of one unit at once (sweep points, then seeds): a GPU idles under one small run")
    p.add_argument("--no-cost", action="store_true",
                   help="skip the CPU cost measurements (e.g. training on a GPU; add them later with --costs-only)")
    p.add_argument("--costs-only", action="store_true",
                   help="only measure, on this machine, the cost of every model that has results (kind: scans: the "
                        "budget of every unit, estimated from one timed training step and scan)")
    p.add_argument("--fair-heatmaps", action="store_true",
                   help="choose every model's CAM method and target layers on val by the same grid (seed 0, retrained "
                        "where its checkpoint is gone), then score every seed with a checkpoint on test at it")
    p.add_argument("--search-again", action="store_true",
                   help="with --fair-heatmaps: run the CAM grid again even where a choice is on record (after a fix "
                        "to a model's layers or to the grid); the default-CAM scores on record are kept")
    p.add_argument("--report-only", action="store_true", help="rewrite the report from the finished runs")
    p.add_argument("--sweep-only", action="store_true",
                   help="run the sweep points the config lists that have not run (after the grid grew), finished "
                        "units included, choose again, and name the seeds trained at another choice")
    p.add_argument("--drop-stale", action="store_true",
                   help="with --sweep-only: set those seeds aside (to <out>/superseded, and out of results.json), "
                        "so that the next run trains them at the new choice")
    p.add_argument("--no-report", action="store_true", help="do not write the report")


def run(a: argparse.Namespace) -> None:
    from ..benchmark import BenchmarkConfig, add_costs, report, run_benchmark, save_results, sweep_units
    from ..benchmark.scan_report import scan_report

    cfg = BenchmarkConfig.load(a.config)
    if a.drop_stale and not a.sweep_only:
        raise ValueError("--drop-stale goes with --sweep-only (it sets aside the seeds a new sweep choice made stale)")
    if a.search_again and not a.fair_heatmaps:
        raise ValueError("--search-again goes with --fair-heatmaps (it runs the CAM grid again)")
    if a.sweep_only:
        stale = sweep_units(cfg, only_models=a.models, only_tasks=a.tasks, parallel_runs=a.parallel_runs,
                            drop_stale=a.drop_stale)
        hint = "" if a.drop_stale else " (--drop-stale sets them aside; then run the benchmark again)"
        print(f"seeds trained at another choice{hint}:\n  " + "\n  ".join(stale) if stale
              else "every recorded seed was trained at the current choice")
        return
    if a.report_only:
        records = save_results(cfg)
    elif a.costs_only:
        records = add_costs(cfg)
    elif a.fair_heatmaps:
        from ..benchmark.fair_heatmaps import fair_heatmaps

        records = fair_heatmaps(cfg, only_models=a.models, only_tasks=a.tasks, search_again=a.search_again)
    else:
        records = run_benchmark(cfg, only_models=a.models, only_tasks=a.tasks, cost=not a.no_cost, jobs=a.jobs,
                                parallel_runs=a.parallel_runs, config_path=a.config)
    if not a.no_report:
        (scan_report if cfg.kind == "scans" else report)(cfg, records)
    print(f"{len(records)} runs in {cfg.results}" + ("" if a.no_report else f"; report: {cfg.report}"))


