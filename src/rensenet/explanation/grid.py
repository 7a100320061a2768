"""The same heatmap search for every model: CAM methods x target layers, chosen on val by pointing game.

A model's last stage is a 1 x 1 or 2 x 2 map at 48 px for ImageNet-style networks, which points at chance by
construction; comparing RenseNet's tuned heatmaps against that would be unfair. Every model gets the same grid:
each stage of its ``feature_info`` alone, every pair of a finer and a coarser stage (averaged, the way RenseNet's
default pairs its stride-4 stage with the ECM's stride-2 map), and the model's own default targets.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence, Tuple, Union

import numpy as np
import torch.nn as nn

from ..base import resolve_device
from ..base.cam import compute_cams, default_target_layers
from .run import lesion_table, load_split
from .scores import summarize_localization

#: The methods every model is searched over (issue 19 asks for at least these four).
GRID_METHODS = ("gradcam", "hirescam", "layercam", "gradcam++")


def stage_layers(model: nn.Module) -> List[str]:
    """The modules of the model's feature stages, finest first (timm's ``feature_info``)."""
    info = getattr(model, "feature_info", None)
    if not info:
        raise ValueError(f"{type(model).__name__} has no feature_info: its stages cannot be searched")
    dicts = info if isinstance(info, list) else info.get_dicts()
    return [d["module"] for d in sorted(dicts, key=lambda d: d["reduction"])]


def layer_grid(model: nn.Module) -> List[List[str]]:
    """Each stage, each (finer, coarser) pair of stages, then the model's default targets if not yet listed."""
    stages = stage_layers(model)
    grid = [[s] for s in stages] + [[a, b] for a, b in combinations(stages, 2)]
    default = default_target_layers(model)
    return grid + ([default] if default not in grid else [])


@dataclass
class CamChoice:
    """The setting with the best pointing game on the split searched, and every setting's scores."""

    method: str
    target_layers: List[str]
    split: str
    rows: List[Dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return {"method": self.method, "target_layers": self.target_layers, "split": self.split, "rows": self.rows}


Settings = Sequence[Tuple[str, List[str]]]


def score_settings(checkpoint: Union[str, Path], data: Union[str, Path],
                   settings: Union[Settings, Callable[[nn.Module], Settings]], *, split: str, n_boot: int = 200,
                   device: str = "auto") -> List[Dict[str, Any]]:
    """Pointing game and energy lift of the lesion class's heatmap for each (method, layers), the model and
    images loaded once; ``settings`` may be a function of the loaded model (its layer names). A setting the CAM
    library cannot run (a layer with several outputs) gets its reason."""
    model, _, frame, x, masks = load_split(checkpoint, data, split=split, device=resolve_device(device))
    if callable(settings):
        settings = settings(model)
    rows_ = np.flatnonzero(masks.reshape(len(masks), -1).any(1))
    if not len(rows_):
        raise ValueError(f"{data}: split {split!r} has no lesion masks: heatmaps cannot be scored")
    labels = frame["label"].to_numpy()[rows_]
    out = []
    for method, layers in settings:
        row: Dict[str, Any] = {"method": method, "target_layers": list(layers)}
        try:
            cams = compute_cams(model, x[rows_], labels, method=method, target_layers=layers)
        except ValueError as e:
            out.append({**row, "error": str(e)})
            continue
        summary = summarize_localization(lesion_table(cams, masks, frame, rows_), n_boot=n_boot)
        out.append({**row, **{k: summary[k]["value"] for k in ("pointing_game", "energy_lift", "energy_in_lesion")},
                    "chance_pointing_game": summary["chance"]["pointing_game"]})
    return out


def choose_cam(checkpoint: Union[str, Path], data: Union[str, Path], *, split: str = "val",
               methods: Sequence[str] = GRID_METHODS, n_boot: int = 200, device: str = "auto") -> CamChoice:
    """Search :data:`GRID_METHODS` x :func:`layer_grid` on ``split`` (val: never choose on test); the best
    pointing game wins, energy lift breaks ties."""
    rows = score_settings(checkpoint, data, lambda model: [(m, layers) for m in methods for layers in layer_grid(model)],
                          split=split, n_boot=n_boot, device=device)
    scored = [r for r in rows if "error" not in r]
    if not scored:
        raise ValueError(f"{checkpoint}: no CAM setting of the grid could run: {rows[0].get('error')}")
    best = max(scored, key=lambda r: (r["pointing_game"], r["energy_lift"]))
    return CamChoice(best["method"], best["target_layers"], split, rows)
