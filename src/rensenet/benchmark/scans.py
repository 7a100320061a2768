"""Scan settings chosen on validation: where candidates lie (map peaks or CAM-refined, with one or three heatmap
peaks) and the stride, by the val CPM of ``rensenet scan``; what the shipped detectors carry and the whole-image
benchmark reports."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple, Union

from ..data import image_paths, read_manifest, select_split
from ..evaluation.scans import evaluate_scans
from ..scanning.run import ScanSettings, scan

#: The grid: every refinement at both strides (model pixels between windows).
GRID: List[Dict[str, Any]] = [dict(refine="map", stride=s) for s in (8, 4)] + \
    [dict(refine="cam", cam_peaks=k, stride=s) for k in (1, 3) for s in (8, 4)]


def scan_split(weights: Union[str, Path], data: Union[str, Path], split: str, settings: Dict[str, Any],
               n_boot: int = 1000) -> Tuple[Dict[str, Any], float]:
    """(FROC of ``evaluate-scans``, seconds per slice) of scanning every image of a manifest split with the
    weights' own scan settings, overridden by ``settings``."""
    inputs = image_paths(select_split(read_manifest(data), split))
    result = scan(weights, inputs, settings=ScanSettings.for_weights(weights, progress=False, overlays=0, **settings))
    return evaluate_scans(result.candidates, data, split=split, n_boot=n_boot), result.seconds_per_slice


def choose_scan_settings(weights: Union[str, Path], data: Union[str, Path], *, split: str = "val",
                         grid: List[Dict[str, Any]] = GRID) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
    """(the settings with the best CPM on ``split``, one row per setting tried: settings, CPM, sensitivities)."""
    rows = []
    for settings in grid:
        froc, seconds = scan_split(weights, data, split, settings, n_boot=200)
        rows.append({"settings": settings, "cpm": froc["cpm"], "sens_at_fp": froc["sens_at_fp"],
                     "seconds_per_slice": seconds})
        print(f"  {split} {settings}: CPM {froc['cpm']['value']:.3f}", file=sys.stderr, flush=True)  # progress
    best = max(rows, key=lambda r: r["cpm"]["value"])
    return dict(best["settings"]), rows
