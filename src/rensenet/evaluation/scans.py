"""``rensenet evaluate-scans``: FROC of a scan's candidates against the lesion boxes of a manifest split.

Sensitivity at 1/8 ... 8 false positives per image, their mean (CPM, as in LUNA16) with a patient-bootstrap 95 %
interval, sensitivity by lesion-size tercile, the FROC curve (PNG) and ``froc.json``. A candidate hits a lesion
inside its box grown by ``tolerance`` px (default 4: a stone's box is about 15 px wide, and a point 4 px outside it
still lands on the stone's blur at this resolution; the window data cut negatives 4 px clear of lesions too).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np
import pandas as pd

from ..base.froc import FP_RATES, ImageMatch, froc_curve, match_image, sensitivity_at
from ..base.io import save_figure, write_json
from ..base.stats import TERCILES, patient_bootstrap, size_terciles
from ..data import DataError, image_shape, read_manifest, select_split
from ..data.readers import read_mask
from ..data.windows import lesion_boxes, lesion_sizes

DEFAULT_TOLERANCE = 4.0


def read_candidates(candidates: Union[str, Path, pd.DataFrame]) -> pd.DataFrame:
    """A scan's candidates.csv (or its table), checked: the columns FROC needs, and numbers where numbers belong;
    anything else is one line naming the file and the first bad row."""
    name = "candidates" if isinstance(candidates, pd.DataFrame) else str(candidates)
    if isinstance(candidates, pd.DataFrame):
        table = candidates
    else:
        try:
            table = pd.read_csv(candidates, keep_default_na=False, na_values={"score": [""]})
        except pd.errors.EmptyDataError:
            raise DataError(f"{name}: an empty file (not even a header); give the candidates.csv that `rensenet "
                            "scan` wrote") from None
        except (pd.errors.ParserError, UnicodeDecodeError) as e:
            raise DataError(f"{name}: not a CSV table ({e}); give the candidates.csv that `rensenet scan` wrote") \
                from None
    missing = [c for c in ("path", "x", "y", "score") if c not in table.columns]
    if missing:
        raise DataError(f"{name}: no column(s) {missing}; give the candidates.csv that `rensenet scan` wrote")
    table = table.copy()
    for column in ("x", "y", "score"):
        values = pd.to_numeric(table[column], errors="coerce")
        bad = np.flatnonzero(~np.isfinite(values.to_numpy(float)))
        if len(bad):
            i = int(bad[0])
            raise DataError(f"{name}: row {i + 1} (line {i + 2}): {column} is {str(table[column].iloc[i])!r}, not a "
                            f"number ({len(bad)} such row(s)); fix or remove those rows")
        table[column] = values
    return table


def candidate_rows(frame: pd.DataFrame, candidates: pd.DataFrame) -> np.ndarray:
    """For each candidate, the manifest row of its image (-1: not in this split), matched by resolved path, then
    by the path as the manifest writes it, then by file name where that is unique."""
    root = Path(frame.attrs["root"])
    by_abs = {str((root / p).resolve()): i for i, p in enumerate(frame["path"])}
    by_rel = {str(p): i for i, p in enumerate(frame["path"])}
    names = pd.Series([Path(p).name for p in frame["path"]])
    by_name = {n: i for i, n in enumerate(names) if (names == n).sum() == 1}
    out = []
    for p in candidates["path"].astype(str):
        i = by_abs.get(str(Path(p).resolve()), by_rel.get(p, by_name.get(Path(p).name, -1)))
        out.append(i)
    return np.asarray(out, dtype=int)


def match_scans(candidates: pd.DataFrame, frame: pd.DataFrame, *, tolerance: float = DEFAULT_TOLERANCE) -> List[ImageMatch]:
    """One :class:`ImageMatch` per manifest row (images without candidates included: their lesions are missed)."""
    rows = candidate_rows(frame, candidates) if len(candidates) else np.zeros(0, int)
    root = Path(frame.attrs["root"])
    matches = []
    for i, row in frame.reset_index(drop=True).iterrows():
        mask = read_mask(root / row["mask_path"], image_shape(root / row["path"])) if row["mask_path"] else None
        boxes = lesion_boxes(row["bbox"], mask)
        mine = candidates[rows == i]
        matches.append(match_image(mine[["x", "y", "score"]].to_numpy(float), boxes, tolerance=tolerance,
                                   sizes=lesion_sizes(boxes, mask)))
    return matches


def evaluate_scans(candidates: Union[str, Path, pd.DataFrame], data: Union[str, Path], *, split: str = "test",
                   tolerance: float = DEFAULT_TOLERANCE, out: Optional[Union[str, Path]] = None, n_boot: int = 1000,
                   seed: int = 0) -> Dict[str, Any]:
    """FROC of ``candidates`` (a scan's candidates.csv, or its table) on ``split`` of ``data``."""
    table = read_candidates(candidates)
    frame = select_split(read_manifest(data), split)
    rows = candidate_rows(frame, table) if len(table) else np.zeros(0, int)
    outside = int((rows < 0).sum())
    matches = match_scans(table, frame, tolerance=tolerance)
    sizes = np.concatenate([m.lesion_sizes for m in matches])
    n_lesions = int(len(sizes))
    if not n_lesions:
        raise DataError(f"{data}: split {split!r} has no lesion boxes or masks; FROC needs lesions")
    patients = frame["patient_id"].to_numpy()

    def stats(idx: np.ndarray) -> Dict[str, float]:
        picked = [matches[i] for i in idx]
        sens = sensitivity_at(picked)
        return {"cpm": float(np.mean(list(sens.values()))), **{f"sens_at_{r:g}": v for r, v in sens.items()}}

    boot = patient_bootstrap(stats, patients, n_boot=n_boot, seed=seed)
    bins = size_terciles(sizes)
    by_size = []
    if bins is not None:
        for name in TERCILES:
            sel = (bins == name).to_numpy()
            sens = sensitivity_at(matches, lesions=sel)
            by_size.append({"tercile": name, "n": int(sel.sum()), "min_px": float(sizes[sel].min()),
                            "max_px": float(sizes[sel].max()), "cpm": float(np.mean(list(sens.values()))),
                            "sens_at_fp": {f"{r:g}": v for r, v in sens.items()}})
    fp_rate, sensitivity = froc_curve(matches)
    result: Dict[str, Any] = {
        "data": str(data), "split": split, "tolerance_px": tolerance, "n_images": len(matches),
        "n_patients": int(len(set(patients))), "n_lesions": n_lesions, "n_candidates": int((rows >= 0).sum()),
        "candidates_outside_split": outside, "fp_rates": list(FP_RATES),
        "sens_at_fp": {f"{r:g}": boot[f"sens_at_{r:g}"] for r in FP_RATES}, "cpm": boot["cpm"],
        "n_boot": n_boot, "by_lesion_size": by_size,
        "curve": {"fp_per_image": fp_rate.round(4).tolist(), "sensitivity": sensitivity.round(4).tolist()},
    }
    if out is not None:
        out = Path(out)
        write_json(out / "froc.json", result)
        plot_froc(out / "froc.png", {"candidates": (fp_rate, sensitivity)}, title=f"FROC, {split} ({n_lesions} lesions)")
    return result


def plot_froc(path: Path, curves: Dict[str, tuple], *, title: str = "") -> Path:
    """FROC curves (false positives per image on a log axis, sensitivity), the 7 CPM rates marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    for name, (fp, sens) in curves.items():
        order = np.argsort(fp, kind="stable")
        ax.step(np.clip(fp[order], 1 / 16, None), sens[order], where="post", label=name)
    for r in FP_RATES:
        ax.axvline(r, color="grey", lw=0.4, ls=":")
    ax.set_xscale("log", base=2)
    ax.set_xlim(1 / 16, 16)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false positives per image")
    ax.set_ylabel("sensitivity")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return save_figure(path, fig, dpi=130)


def format_froc(result: Dict[str, Any]) -> str:
    cpm_ = result["cpm"]
    lines = [f"FROC on {result['split']}: {result['n_images']} images, {result['n_lesions']} lesions, "
             f"{result['n_candidates']} candidates (hit within {result['tolerance_px']:g} px of a box)",
             f"  CPM {cpm_['value']:.4f}  [{cpm_['ci_low']:.4f}, {cpm_['ci_high']:.4f}]",
             "  sensitivity at " + ", ".join(f"{r} FP: {v['value']:.3f}" for r, v in result["sens_at_fp"].items())]
    for row in result["by_lesion_size"]:
        lines.append(f"  {row['tercile']:<6} lesions ({row['min_px']:.0f}-{row['max_px']:.0f} px, n={row['n']}): "
                     f"CPM {row['cpm']:.3f}, sensitivity at 1 FP {row['sens_at_fp']['1']:.3f}")
    if result["candidates_outside_split"]:
        lines.append(f"  ({result['candidates_outside_split']} candidates on images outside this split were ignored)")
    return "\n".join(lines)
