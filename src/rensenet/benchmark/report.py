"""RESULTS.md: mean +- std tables, the paired test against the best baseline, figures and the sweep table."""
from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from ..base.io import write_text
from .config import COST_FIELDS, BenchmarkConfig, base_options, fmt_opts, selection_key, unit_sweep
from .fair_heatmaps import cam_notes, chosen_panel_path
from .records import record_path
from .sweep import kept_sweep, untried_points


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
    """Every model's heatmap at its default CAM on the same first ``n`` test lesions, side by side.

    Each model is shown from its lowest seed with the saved panel (``explain/lesions.npz``, which travels with
    the results) or, failing that, a checkpoint. A model with neither (a record published by another clone) is
    left out of a new figure, but an existing figure is not redrawn with fewer models (None), nor is one drawn
    from no panel at all.
    """
    from ..explanation import compare_panels, explain_model, lesion_panel, load_lesion_panel, save_lesion_panel

    data = str(Path(cfg.data_root) / task)
    panels = {}
    shown = [name for name in cfg.models if any(r["task"] == task and r["model"] == name for r in records)]
    for name in shown:
        for r in sorted((r for r in records if r["task"] == task and r["model"] == name), key=lambda r: r["seed"]):
            saved = record_path(cfg, task, name, r["seed"]).parent / "explain" / "lesions.npz"
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


def chosen_heatmap_comparison(cfg: BenchmarkConfig, records: List[Dict[str, Any]], task: str, *,
                              n: int = 8) -> List[str]:
    """Report lines for the figure of seed 0's heatmaps at each model's CAM chosen on val, drawn from the panels
    ``--fair-heatmaps`` commits beside the report; the models it lacks are named under it."""
    from ..explanation import compare_panels, load_lesion_panel

    panels, missing = {}, []
    for name in cfg.models:
        r = next((r for r in records if r["task"] == task and r["model"] == name and r["seed"] == 0), None)
        if r is None or r.get("pointing_game", r.get("pointing_game_default_cam")) is None:
            continue  # not trained, or no lesion masks
        saved = chosen_panel_path(cfg, task, name)
        if r.get("cam_method") and saved.exists():
            label = f"{name} ({r['cam_method']}: {' + '.join(r['cam_target'])})"
            panels[label] = {k: v[:n] for k, v in load_lesion_panel(saved).items()}
        else:
            missing.append(name)
    if not panels:
        return []
    figure = Path(cfg.report).parent / f"heatmaps_chosen_{task}.png"
    compare_panels(panels, Path(cfg.report).parent).replace(figure)
    tail = f" Not in it yet (no panel at a chosen CAM): {', '.join(missing)}." if missing else ""
    return [f"Seed 0's heatmaps at each model's CAM chosen on val, on the same test lesions.{tail}", "",
            f"![Heatmaps at the CAM chosen on val]({figure.name})", ""]


def sweep_table(cfg: BenchmarkConfig, task: str) -> List[str]:
    """The validation sweep behind each model's settings, so the choices are on record."""
    rows, key = [], selection_key(cfg)
    for name in cfg.models:
        chosen = kept_sweep(cfg, task, name)
        if chosen is not None:
            tried = ", ".join(f"{fmt_opts(t['options'])}: {t[key]:.3f}" for t in chosen["tried"])
            missing = untried_points(chosen, unit_sweep(cfg, task, name), base_options(cfg, task, name).get("img_size"))
            tried += f"; not tried: {', '.join(missing)}" if missing else ""
            rows.append(f"| {name} | {fmt_opts(chosen['options'])} | {tried} |")
    if not rows:
        return []
    score = key.replace("val_", "").upper()
    return [f"Settings chosen on validation {score} (seed 0):", "", f"| model | chosen | tried: best val {score} |",
            "|---|---|---|", *rows, ""]


def _plot_auc_vs_gflops(path: Path, task: str, means: Dict[str, Dict[str, float]]) -> None:
    """Mean test AUC (bars: std over seeds) against GFLOPs, one marker per model, named in a legend beside the axes:
    models of similar cost cluster, and text labels on the points would print over each other."""
    import matplotlib.pyplot as plt

    from ..base.io import save_figure

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
        lines += cam_notes(records, task, list(cfg.models))
        _plot_auc_vs_gflops(report_dir / f"auc_vs_gflops_{task}.png", task, means)
        lines += ["", f"![AUC vs GFLOPs](auc_vs_gflops_{task}.png)", ""]
        heatmaps = report_dir / f"heatmaps_{task}.png"
        if heatmap_comparison(cfg, rows, task) is not None or heatmaps.exists():
            lines += [f"![Heatmaps of every model at its default CAM on the same test lesions]({heatmaps.name})", ""]
        lines += chosen_heatmap_comparison(cfg, rows, task)
        lines += sweep_table(cfg, task)
    text = "\n".join(lines) + "\n"
    write_text(cfg.report, text)
    return text
