"""One training run of the benchmark: a child ``rensenet train --config run/train_config.json``, timed, and never
redone once finished."""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any, Dict

from ..base import TrainConfig
from ..base.io import write_json
from .config import BenchmarkConfig
from .processes import machine_description, run_child


def run_config(cfg: BenchmarkConfig, task: str, spec: Dict[str, Any], run: Path, *, epochs: int, seed: int,
               options: Dict[str, Any]) -> TrainConfig:
    """The typed config of one run: the recipe's options on the task's data (checked before any child starts)."""
    return TrainConfig.from_dict({**options, "data": str(Path(cfg.data_root) / task), "model": spec["model"],
                                  "out": str(run), "epochs": epochs, "seed": seed, "progress": False,
                                  "resume": (run / "last.pt").exists()})


def finished(run: Path, epochs: int) -> bool:
    """All epochs ran and were timed (the checkpoint may be gone: results copied from another machine)."""
    import pandas as pd

    return (run / "timing.json").exists() and (run / "history.csv").exists() and \
        len(pd.read_csv(run / "history.csv")) >= epochs


def train_run(cfg: BenchmarkConfig, task: str, spec: Dict[str, Any], run: Path, *, epochs: int, seed: int,
              options: Dict[str, Any]) -> Dict[str, Any]:
    """Train one run unless it finished before; its time, peak memory and config are kept in run/timing.json."""
    timing = run / "timing.json"
    if finished(run, epochs):
        return json.loads(timing.read_text())
    run.mkdir(parents=True, exist_ok=True)
    config = run_config(cfg, task, spec, run, epochs=epochs, seed=seed, options=options)
    config_file = write_json(run.parent / f"{run.name}.train_config.json", config.to_dict())
    cmd = [sys.executable, "-m", "rensenet", "train", "--config", str(config_file)]
    seconds, peak_mb = run_child(cmd, run.parent / f"{run.name}.log")
    info = {"train_seconds": round(seconds, 1), "train_peak_rss_mb": round(peak_mb, 1),
            "command": " ".join(shlex.quote(c) for c in cmd[1:]), "train_machine": machine_description()}
    write_json(timing, info)
    return info
