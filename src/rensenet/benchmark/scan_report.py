"""The whole-image report (``kind: scans``): FROC tables, mean +- std over seeds, the paired test of the reference
against the best other model, and every model's test FROC curve on one figure per task."""
from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from ..base.io import write_text
from .config import BenchmarkConfig
from .report import paired_test, sweep_table
from .scan_costs import budget_table
from .scan_figure import side_by_side

COLUMNS = [("CPM", lambda r: r["cpm"]), ("sens at 1/2 FP", lambda r: r["sens_at_fp"]["0.5"]),
           ("sens at 1 FP", lambda r: r["sens_at_fp"]["1"]), ("sens at 2 FP", lambda r: r["sens_at_fp"]["2"]),
           ("small-lesion sens at 1 FP", lambda r: r["small_lesion_sens_at_1fp"]),
           ("s/slice", lambda r: r["seconds_per_slice"]), ("GFLOPs/slice", lambda r: r["gflops_per_slice"]),
           ("peak MB", lambda r: r["peak_mem_mb"]), ("train s", lambda r: r["train_seconds"])]


def _cell(values: List[float]) -> str:
    v = np.array([x for x in values if x is not None], dtype=float)
    if not len(v):
        return "-"
    def fmt(x: float, digits: int) -> str:  # a memory of 1330 MB reads 1330, not 1.33e+03
        return f"{x:.0f}" if abs(x) >= 10 ** digits else f"{x:.{digits}g}"

    return f"{fmt(v.mean(), 3)} +- {fmt(v.std(ddof=1), 2)}" if len(v) > 1 else fmt(v.mean(), 3)


def _plot_curves(path: Path, task: str, curves: Dict[str, tuple]) -> None:
    from ..evaluation.scans import plot_froc

    plot_froc(path, {name: (np.asarray(fp), np.asarray(sens)) for name, (fp, sens) in curves.items()},
              title=f"{task}: test FROC (lowest seed of each model)")


def scan_report(cfg: BenchmarkConfig, records: List[Dict[str, Any]], *, reference: str = "rensenet_s") -> str:
    """Markdown for a ``kind: scans`` benchmark, written to ``cfg.report``; figures beside it."""
    import matplotlib

    matplotlib.use("Agg")
    preamble = Path(cfg.preamble).read_text().rstrip() + "\n" if cfg.preamble and Path(cfg.preamble).exists() else ""
    machines = sorted({r.get("scan_machine", "?") for r in records})
    lines = [preamble or f"# Whole-image benchmark ({date.today().isoformat()})", "",
             "## Tables (written by `rensenet benchmark`)", "",
             f"{cfg.epochs} epochs, seeds {cfg.seeds}, test split, `rensenet scan` with each model's default scan "
             "settings; mean +- sample std over seeds (n = seeds that finished). Seconds per slice and peak memory of "
             f"the scan process, on: {'; '.join(machines) or '-'}.", ""]
    for task in cfg.tasks:
        rows = [r for r in records if r["task"] == task]
        if not rows:
            continue
        lines += [f"### {task}", "", "| model | n | lr | " + " | ".join(c for c, _ in COLUMNS) + " |",
                  "|---|---|---|" + "---|" * len(COLUMNS)]
        means, curves = {}, {}
        for name in cfg.models:
            rs = sorted((r for r in rows if r["model"] == name), key=lambda r: r["seed"])
            if not rs:
                continue
            means[name] = float(np.mean([r["cpm"] for r in rs]))
            curves[name] = (rs[0]["curve"]["fp_per_image"], rs[0]["curve"]["sensitivity"])
            lr = "/".join(sorted({f"{r['lr']:g}" for r in rs}))
            lines.append(f"| {name} | {len(rs)} | {lr} | " + " | ".join(_cell([get(r) for r in rs]) for _, get in COLUMNS)
                         + " |")
        heatmaps = sorted({f"{r['model']}: {r['cam_method']} on {' + '.join(r['cam_target'])}" for r in rows
                           if r.get("cam_method")})
        if heatmaps:  # the rest place candidates with their default CAM
            lines += ["", "Candidates placed with the CAM chosen on val on the window task (`cam_choices`): "
                          + "; ".join(heatmaps) + ". Every other model: its default CAM."]
        others = [m for m in means if m != reference]
        if reference in means and others:
            best = max(others, key=means.get)
            test = paired_test(records, task, reference, best, metric="cpm")
            if test:
                lines += ["", f"{reference} vs the best other model on CPM ({best}): difference "
                              f"{test['mean_difference']:+.4f}, paired t-test over {test['n_seeds']} seeds "
                              f"p = {test['p_value']:.3g}."]
        figure = Path(cfg.report).parent / f"froc_{task}.png"
        _plot_curves(figure, task, curves)
        lines += ["", f"![FROC of every model]({figure.name})", ""]
        panels = Path(cfg.report).parent / f"slices_{task}.png"
        if side_by_side(cfg, records, task, panels) or panels.exists():  # a clone keeps the committed figure
            lines += [f"![8 test slices with every model's candidates at 1 FP per image]({panels.name})", ""]
        lines += sweep_table(cfg, task)
    lines += budget_table(cfg)
    text = "\n".join(lines) + "\n"
    write_text(cfg.report, text)
    return text
