"""Finished runs: each (task, model, seed) writes record.json; results.json gathers them and is what a clone has."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..base.io import write_json
from .config import BenchmarkConfig
from .cost import cached_cost, cost_path, cost_spec


def record_path(cfg: BenchmarkConfig, task: str, name: str, seed: int) -> Path:
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
    path = record_path(cfg, task, name, seed)
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
                if record is not None:  # a whole-image record carries the cost of its own scan
                    cost = cached_cost(cost_path(cfg, task, name), cost_spec(record)) \
                        if with_cost and cfg.kind != "scans" else None
                    if cost:
                        record.update(cost)
                    records.append(record)
    return records + list(published.values())


def save_results(cfg: BenchmarkConfig) -> List[Dict[str, Any]]:
    """Every finished run's record, with costs, written to ``cfg.results`` (the issue's results.json) and returned."""
    records = collect_records(cfg)
    write_json(cfg.results, records)
    return records
