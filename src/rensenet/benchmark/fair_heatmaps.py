"""Heatmaps compared fairly (``rensenet benchmark --fair-heatmaps``): every model's CAM method and target layers
chosen on val by the same grid (:mod:`rensenet.explanation.grid`), then every seed scored on test at that setting.

The choice is made on seed 0's checkpoint, retrained from its record's options where it is gone (runs copied from
another machine carry none); a seed without a checkpoint is not scored, its row says so. The pointing game and
energy lift a record had before (its default CAM) stay in ``pointing_game_default_cam`` and
``energy_lift_default_cam``. The grid runs once per (task, model): a choice already on record is kept when seed 0
is retrained again, which is how a clone redraws the chosen-CAM figure (seed 0's panel, committed beside the report
in ``heatmaps_chosen/``) without repeating the search; ``search_again`` discards it (after a fix to a model's layer
names or to the grid), keeping the default-CAM scores on record.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..base.io import write_json
from .config import BenchmarkConfig, units
from .records import finished_record, record_path, save_results
from .runs import train_run


def choice_path(cfg: BenchmarkConfig, task: str, name: str) -> Path:
    return Path(cfg.out) / "cam_grid" / task / f"{name}.json"


def chosen_panel_path(cfg: BenchmarkConfig, task: str, name: str) -> Path:
    """Seed 0's first test lesions at its chosen CAM: beside the report, so the figure travels with the results."""
    return Path(cfg.report).parent / "heatmaps_chosen" / task / f"{name}.npz"


def _choice(cfg: BenchmarkConfig, task: str, name: str, seed0: Path, retrained: bool,
            record: Dict[str, Any], *, search_again: bool = False) -> Dict[str, Any]:
    """The CAM of this (task, model): searched on val with this checkpoint, or the one already on record."""
    path = choice_path(cfg, task, name)
    kept = json.loads(path.read_text()) if path.exists() and not search_again else {}
    if kept.get("checkpoint") == str(seed0):
        return kept
    from ..explanation.grid import choose_cam

    if record.get("cam_method") and not search_again:  # searched before, on a checkpoint since gone: keep it
        choice = {"method": record["cam_method"], "target_layers": record["cam_target"],
                  "searched_on": "an earlier checkpoint of seed 0 (the choice on record)"}
    else:
        print(f"[{task} / {name}] CAM grid on val", flush=True)
        choice = choose_cam(seed0, Path(cfg.data_root) / task, split="val", n_boot=cfg.n_boot).to_dict()
    choice = {**choice, "checkpoint": str(seed0), "retrained": retrained}
    write_json(path, choice)
    return choice


def _seed0_checkpoint(cfg: BenchmarkConfig, task: str, name: str, record: Dict[str, Any]) -> tuple:
    """(seed 0's best.pt, whether it was retrained here): the recorded run's, else a run retrained from the record's
    options beside the record (the recorded run folder may hold a finished history without weights)."""
    original = Path(record["run"]) / "best.pt"
    if original.exists():
        return original, False
    run = record_path(cfg, task, name, 0).parent / "cam_run"
    if not (run / "best.pt").exists():
        print(f"[{task} / {name} / seed 0] retraining for the CAM search (its checkpoint is gone)", flush=True)
    train_run(cfg, task, cfg.models[name], run, epochs=cfg.epochs, seed=0, options=record["train_options"])
    return run / "best.pt", True


def fair_heatmaps(cfg: BenchmarkConfig, *, only_models: Optional[List[str]] = None,
                  only_tasks: Optional[List[str]] = None, search_again: bool = False) -> List[Dict[str, Any]]:
    """Choose each (task, model)'s CAM on val (again, with ``search_again``) and score its seeds on test; the
    records, saved."""
    from ..explanation import explain_model, lesion_panel, save_lesion_panel

    if cfg.kind == "scans":
        raise ValueError("--fair-heatmaps scores heatmaps of window classifiers against lesion masks: give it a "
                         "kind: windows config (benchmarks/full.yaml), not a whole-image one")

    for task, name in units(cfg, only_models=only_models, only_tasks=only_tasks):
        found = {seed: finished_record(cfg, task, name, seed) for seed in cfg.seeds}
        records = {seed: r for seed, r in found.items() if r is not None}
        if 0 not in records or records[0].get("pointing_game", records[0].get("pointing_game_default_cam")) is None:
            continue  # not trained, or a task without lesion masks
        data = Path(cfg.data_root) / task
        seed0, retrained = _seed0_checkpoint(cfg, task, name, records[0])
        choice = _choice(cfg, task, name, seed0, retrained, records[0], search_again=search_again)
        for seed, record in records.items():
            ckpt = seed0 if seed == 0 else Path(record["run"]) / "best.pt"
            done = record.get("cam_method") == choice["method"] and record.get("cam_target") == choice["target_layers"]
            scored = record.get("pointing_game") is not None and (seed or chosen_panel_path(cfg, task, name).exists())
            if done and (scored or not ckpt.exists()):
                continue  # scored at this choice (seed 0 with its figure panel), or cannot be
            update: Dict[str, Any] = {"cam_method": choice["method"], "cam_target": choice["target_layers"],
                                      "cam_checkpoint": None, "pointing_game": None, "energy_lift": None}
            if "cam_method" not in record:  # first time: keep what the default CAM scored
                update.update(pointing_game_default_cam=record.get("pointing_game"),
                              energy_lift_default_cam=record.get("energy_lift"))
            if ckpt.exists():
                e = explain_model(ckpt, data, split="test", method=choice["method"],
                                  target_layers=choice["target_layers"], faithfulness=False, n_boot=cfg.n_boot)
                panel = lesion_panel(e)
                save_lesion_panel(record_path(cfg, task, name, seed).parent / "explain_fair" / "lesions.npz", panel)
                if seed == 0:  # the report's chosen-CAM figure
                    save_lesion_panel(chosen_panel_path(cfg, task, name), panel)
                update.update(pointing_game=e.localization["pointing_game"]["value"],
                              energy_lift=e.localization["energy_lift"]["value"],
                              cam_checkpoint="retrained here" if seed == 0 and retrained else "original")
            write_json(record_path(cfg, task, name, seed), {**record, **update})
        save_results(cfg)
    return save_results(cfg)


def cam_notes(records: List[Dict[str, Any]], task: str, models: List[str]) -> List[str]:
    """Report lines: each model's chosen CAM, and how many of its seeds were scored with it."""
    lines = []
    for name in models:
        rs = [r for r in records if r["task"] == task and r["model"] == name and "cam_method" in r]
        if rs:
            scored = sum(r.get("pointing_game") is not None for r in rs)
            lines.append(f"- {name}: {rs[0]['cam_method']} on {' + '.join(rs[0]['cam_target'])} "
                         f"({scored} of {len(rs)} seeds scored)")
    if not lines:
        return []
    rest = [m for m in models if any(r["task"] == task and r["model"] == m for r in records)
            and not any(r["task"] == task and r["model"] == m and "cam_method" in r for r in records)]
    tail = [f"- at the default CAM, not yet searched: {', '.join(rest)}"] if rest else []
    return ["", "Pointing game and energy lift at each model's CAM chosen on val by the same grid "
                "(`rensenet benchmark --fair-heatmaps`; seeds without a checkpoint are not scored):", *lines, *tail]
