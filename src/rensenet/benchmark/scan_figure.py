"""The side-by-side figure of the whole-image report: 8 test slices, every model's candidates on each, at the
score where that model makes one false positive per image (its FROC's 1-FP operating point)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import pandas as pd

from ..base.froc import match_image
from ..base.io import save_figure
from ..data import SliceDataset, read_manifest, select_split
from ..data.windows import lesion_boxes
from ..evaluation.scans import DEFAULT_TOLERANCE, candidate_rows, match_scans
from .config import BenchmarkConfig
from .records import record_path


def one_fp_threshold(candidates: pd.DataFrame, frame: pd.DataFrame) -> float:
    """The lowest score at which the candidates make at most one false positive per image of ``frame``."""
    fps = np.sort(np.concatenate([m.fp_scores for m in match_scans(candidates, frame)]))[::-1]
    return float(fps[len(frame) - 1]) if len(fps) >= len(frame) else -np.inf  # keep scores above the n-th FP


def side_by_side(cfg: BenchmarkConfig, records: List[Dict[str, Any]], task: str, path: Path, *,
                 n_slices: int = 8) -> Optional[Path]:
    """Draw ``n_slices`` test slices (evenly spread over the split) x every model's lowest seed; None where no
    model's scan candidates are here (a clone has the records, not the runs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    manifest = read_manifest(Path(cfg.data_root) / task)
    frame = select_split(manifest, "test").reset_index(drop=True)
    frame.attrs.update(manifest.attrs)
    models = {}
    for name in cfg.models:
        seeds = sorted(r["seed"] for r in records if r["task"] == task and r["model"] == name)
        csv = record_path(cfg, task, name, seeds[0]).parent / "scan" / "candidates.csv" if seeds else None
        if csv is not None and csv.exists():
            models[name] = pd.read_csv(csv, keep_default_na=False, na_values={"score": [""]})
    if not models:
        return None
    picked = np.unique(np.linspace(0, len(frame) - 1, min(n_slices, len(frame))).round().astype(int))
    slices = SliceDataset(frame.iloc[picked], root=frame.attrs["root"])
    fig, axes = plt.subplots(len(picked), len(models), figsize=(max(1.9 * len(models), 4.2), 1.9 * len(picked)),
                             squeeze=False)  # wide enough for the title with one model
    for name, (col, table) in zip(models, enumerate(models.values())):
        threshold, rows = one_fp_threshold(table, frame), candidate_rows(frame, table)
        for r, i in enumerate(picked):
            image, mask = slices.load(r)
            boxes = lesion_boxes(frame["bbox"].iloc[i], mask)
            mine = table[(rows == i) & (table["score"].to_numpy(float) > threshold)]
            hits = match_image(mine[["x", "y", "score"]].to_numpy(float), boxes, tolerance=DEFAULT_TOLERANCE).hits
            ax = axes[r, col]
            ax.imshow(image, cmap="gray", vmin=0, vmax=1)
            for x0, y0, x1, y1 in boxes:
                ax.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="lime", lw=0.8))
            hit = hits >= 0
            ax.scatter(mine["x"][hit], mine["y"][hit], s=28, facecolors="none", edgecolors="cyan", lw=1.0)
            ax.scatter(mine["x"][hits == -1], mine["y"][hits == -1], s=22, marker="x", c="red", lw=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=7)
    fig.suptitle(f"{task}, test slices. Green: lesions.\nEach model's candidates at 1 FP per image:\n"
                 "cyan = hit, red = false positive", fontsize=7)
    fig.tight_layout()
    return save_figure(path, fig, dpi=110)
