"""``rensenet benchmark --config FILE``: every model on every task, same splits, seeds, epochs and recipe.

Each (task, model, seed) trains in its own process (``runs``), then is evaluated and explained
(``orchestrate``); its ``record.json`` is written at once, so an interrupted benchmark resumes where it stopped and a
finished run is never redone. ``results.json`` gathers the records (``records``), each with its model's CPU cost
(``cost``, measured once per task and model, in a fresh process), and ``report`` turns them into Markdown tables
and figures. The learning rate and input scale of each unit are chosen on validation (``sweep``).

``results.json`` is also what a clone of the repository has of the runs (``out`` is not committed): its records,
with the sweep that chose each one's settings, count as finished, so a fresh clone rewrites the report from them
and never retrains, or drops, a published result.
"""
from .config import COST_FIELDS, RECORD_FIELDS, SCAN_RECORD_FIELDS, BenchmarkConfig, base_options, unit_sweep, units
from .cost import measure_cost
from .orchestrate import add_costs, run_benchmark, run_unit
from .records import collect_records, finished_record, published_records, save_results
from .report import paired_test, report, sweep_table
from .sweep import choose_settings, kept_sweep, set_aside, sweep_units, untried_points

__all__ = ["COST_FIELDS", "RECORD_FIELDS", "SCAN_RECORD_FIELDS", "BenchmarkConfig", "add_costs", "base_options", "choose_settings",
           "collect_records", "finished_record", "kept_sweep", "measure_cost", "paired_test", "published_records",
           "report", "run_benchmark", "run_unit", "save_results", "set_aside", "sweep_table", "sweep_units",
           "unit_sweep", "untried_points", "units"]
