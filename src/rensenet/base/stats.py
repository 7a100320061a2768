"""The one patient bootstrap: 95 % intervals that resample whole patients, for every score the package reports.

Resampling patients (not images or lesions) keeps the correlated slices of one patient together, as the splits do.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

import numpy as np
import pandas as pd

Interval = Dict[str, float]
TERCILES = ("small", "medium", "large")


def patient_bootstrap(
    statistic: Callable[[np.ndarray], Dict[str, float]],
    patients: Sequence,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Dict[str, Interval]:
    """``{name: {"value", "ci_low", "ci_high"}}`` for every score ``statistic(rows)`` returns.

    ``statistic`` gets row indices (with repeats: a patient drawn twice brings its rows twice) and returns
    ``{name: value}``; ``value`` is its result on all rows, the interval the percentile interval of its results
    on ``n_boot`` resamples of the patients (NaN results, such as an AUC on a one-class resample, are left out).
    """
    patients = np.asarray(patients)
    ids, inverse = np.unique(patients, return_inverse=True)
    rows_of = [np.flatnonzero(inverse == p) for p in range(len(ids))]
    point = statistic(np.arange(len(patients)))
    rng = np.random.default_rng(seed)
    samples: Dict[str, list] = {k: [] for k in point}
    for _ in range(n_boot):
        pick = rng.integers(0, len(ids), len(ids))
        result = statistic(np.concatenate([rows_of[p] for p in pick]))
        for k in point:
            samples[k].append(result[k])
    alpha = (1 - confidence) / 2
    out = {}
    for k, value in point.items():
        vals = np.asarray(samples[k], dtype=float)
        vals = vals[np.isfinite(vals)]
        lo, hi = np.quantile(vals, [alpha, 1 - alpha]) if len(vals) else (float("nan"), float("nan"))
        out[k] = {"value": float(value), "ci_low": float(lo), "ci_high": float(hi)}
    return out


def size_terciles(sizes: np.ndarray) -> Optional[pd.Series]:
    """``small`` / ``medium`` / ``large`` for every known size (> 0), by equal-count bins (``pd.qcut``); NaN for
    unknown sizes, None when fewer than 3 are known or the sizes do not split into three bins."""
    sizes = pd.Series(np.asarray(sizes, dtype=float))
    known = sizes.where(np.isfinite(sizes) & (sizes > 0))
    if known.notna().sum() < 3:
        return None
    try:
        return pd.qcut(known, 3, labels=list(TERCILES))
    except ValueError:  # too many equal sizes for three distinct bins
        return None
