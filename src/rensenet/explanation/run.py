"""``rensenet explain``: heatmaps of a checkpoint on a split, scored against the lesion masks."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import torch

from ..base import batches_of, load_model, predict_logits, resolve_device
from ..base.datasets import make_dataset
from ..base.io import atomic_write, write_csv, write_json
from ..data import read_manifest, select_split
from ..base.cam import DEFAULT_METHOD, compute_cams, default_target_layers
from .figures import contact_sheet, model_comparison
from .scores import road_scores, score_heatmaps, summarize_localization


@dataclass
class Explanation:
    """Inputs, heatmaps and scores of one model on one split."""

    model_name: str
    method: str
    target_layers: List[str]
    frame: pd.DataFrame
    images: np.ndarray  # (N, H, W) slices as displayed (model input size, [0, 1])
    masks: np.ndarray  # (N, H, W) bool
    probs: np.ndarray  # (N, C)
    classes: np.ndarray  # class each display heatmap explains
    cams: np.ndarray  # (N, H, W) display heatmaps
    lesion_cams: np.ndarray  # (n_lesions, H, W) heatmaps of the lesion's class, for scoring
    lesion_rows: np.ndarray  # row indices of lesion images
    class_names: List[str] = field(default_factory=list)
    localization: Dict[str, Any] = field(default_factory=dict)
    per_image: Optional[pd.DataFrame] = None
    figures: List[Tuple[str, str]] = field(default_factory=list)


def load_split(checkpoint: Union[str, Path], data: Union[str, Path], *, split: str, limit: Optional[int] = None,
               device: torch.device) -> tuple:
    """(model, its config, the split's rows, model inputs (N, C, H, W), lesion masks (N, H, W)) of one split."""
    model, cfg = load_model(checkpoint, device)
    frame = select_split(read_manifest(data), split)
    if limit:
        attrs = dict(frame.attrs)
        frame = frame.iloc[:limit].reset_index(drop=True)
        frame.attrs.update(attrs)
    ds = make_dataset(frame, cfg)
    samples = [ds[i] for i in range(len(ds))]
    x = torch.stack([s["image"] for s in samples])
    return model, cfg, frame, x, torch.stack([s["mask"][0] for s in samples]).numpy()


def lesion_table(lesion_cams: np.ndarray, masks: np.ndarray, frame: pd.DataFrame, rows: np.ndarray, *,
                 tolerance: float = 0.0, threshold: float = 0.5) -> pd.DataFrame:
    """The scores of the lesion images ``rows`` with their path, patient and lesion size (what
    :func:`summarize_localization` bootstraps over)."""
    table = score_heatmaps(lesion_cams, masks[rows], tolerance=tolerance, threshold=threshold)
    table.insert(0, "path", frame["path"].to_numpy()[rows])
    table.insert(1, "patient_id", frame["patient_id"].to_numpy()[rows])
    table["lesion_px"] = frame["lesion_px"].to_numpy()[rows]
    return table


def explain_model(
    checkpoint: Union[str, Path],
    data: Union[str, Path],
    *,
    split: str = "test",
    method: str = DEFAULT_METHOD,
    target_layers: Optional[Sequence[str]] = None,
    class_mode: str = "predicted",
    limit: Optional[int] = None,
    batch_size: int = 32,
    tolerance: float = 0.0,
    threshold: float = 0.5,
    faithfulness: bool = True,
    n_boot: int = 1000,
    device: str = "auto",
) -> Explanation:
    """Heatmaps for the images of ``split`` (the first ``limit``), and scores for those with a lesion."""
    dev = resolve_device(device)
    model, cfg, frame, x, masks = load_split(checkpoint, data, split=split, limit=limit, device=dev)
    labels = frame["label"].to_numpy()
    probs = torch.softmax(predict_logits(model, batches_of(x, 256), dev), 1).numpy()
    if class_mode == "predicted":
        classes = probs.argmax(1)
    elif class_mode == "true":
        classes = labels
    else:
        try:
            classes = np.full(len(x), int(class_mode))
        except ValueError:
            raise ValueError(f"--class must be 'predicted', 'true' or a class index, got {class_mode!r}") from None
        if not 0 <= classes[0] < probs.shape[1]:
            raise ValueError(f"--class {class_mode} is outside the model's {probs.shape[1]} classes")
    layers = list(target_layers) if target_layers else default_target_layers(model)
    cams = compute_cams(model, x, classes, method=method, target_layers=layers, batch_size=batch_size)
    lesion_rows = np.flatnonzero(masks.reshape(len(masks), -1).any(1))
    same = classes[lesion_rows] == labels[lesion_rows]
    lesion_cams = cams[lesion_rows].copy()
    if (~same).any():  # score the map of the lesion's own class
        redo = lesion_rows[~same]
        lesion_cams[~same] = compute_cams(model, x[redo], labels[redo], method=method, target_layers=layers,
                                          batch_size=batch_size)
    mean, std = np.asarray(cfg.mean)[:, None, None], np.asarray(cfg.std)[:, None, None]
    display = (x.numpy() * std + mean)[:, x.shape[1] // 2]
    result = Explanation(cfg.model, method, layers, frame, display, masks, probs, classes, cams, lesion_cams,
                         lesion_rows, class_names=list(cfg.class_names))
    if len(lesion_rows):
        table = lesion_table(lesion_cams, masks, frame, lesion_rows, tolerance=tolerance, threshold=threshold)
        table["prob_lesion_class"] = probs[lesion_rows, labels[lesion_rows]]
        if faithfulness:
            table["road"] = road_scores(model, x[lesion_rows], lesion_cams, labels[lesion_rows], batch_size=batch_size)
        summary = summarize_localization(table, n_boot=n_boot, tolerance=tolerance, threshold=threshold)
        if faithfulness:
            summary["road_combined"] = float(table["road"].mean())
        result.per_image, result.localization = table, summary
    result.localization.update({"model": cfg.model, "checkpoint": str(checkpoint), "split": split,
                                "method": method, "target_layers": layers, "class_for_scores": "lesion (true) class",
                                "input_size": int(cfg.img_size)})
    return result


def _titles(e: Explanation, rows: Sequence[int]) -> List[str]:
    names = e.frame.attrs.get("class_names") or [f"{i}" for i in range(e.probs.shape[1])]
    out = []
    for i in rows:
        c = int(e.probs[i].argmax())
        out.append(f"true {names[int(e.frame['label'].iloc[i])]}\npred {names[c]} {e.probs[i, c]:.2f}")
    return out


def lesion_panel(e: Explanation, n: int = 8) -> Dict[str, np.ndarray]:
    """The first ``n`` lesions of a split with this model's lesion-class heatmaps: what a comparison figure needs."""
    rows = e.lesion_rows[:n]
    return {"paths": e.frame["path"].to_numpy()[rows].astype(str), "images": e.images[rows].astype(np.float16),
            "masks": e.masks[rows], "cams": e.lesion_cams[:n].astype(np.float16)}  # float16: small enough to travel


def save_lesion_panel(path: Union[str, Path], panel: Dict[str, np.ndarray]) -> Path:
    return atomic_write(path, lambda tmp: np.savez_compressed(tmp, **panel))


def load_lesion_panel(path: Union[str, Path]) -> Dict[str, np.ndarray]:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def write_explanation(e: Explanation, out: Union[str, Path], *, class_names: Sequence[str], n_sheet: int = 8) -> Explanation:
    """localization.json, localization.csv and contact sheets of the most and least confident cases."""
    out = Path(out)
    e.frame.attrs["class_names"] = list(class_names)
    if e.per_image is not None:
        write_csv(out / "localization.csv", e.per_image)
    write_json(out / "localization.json", e.localization)
    confidence = e.probs.max(1)
    order = np.argsort(-confidence, kind="stable")
    for name, rows in (("most_confident", order[:n_sheet]), ("least_confident", order[::-1][:n_sheet])):
        contact_sheet(out / f"{name}.png", e.images[rows], e.cams[rows], e.masks[rows], _titles(e, rows),
                      heading=f"{e.model_name}: {name.replace('_', ' ')} ({e.method} on {', '.join(e.target_layers)})")
        e.figures.append((name.replace("_", " "), f"{name}.png"))
    if len(e.lesion_rows):
        rows = e.lesion_rows[:n_sheet]
        contact_sheet(out / "lesions.png", e.images[rows], e.lesion_cams[:n_sheet], e.masks[rows], _titles(e, rows),
                      heading=f"{e.model_name}: heatmaps of the lesion class on the first lesions")
        e.figures.insert(0, ("lesions", "lesions.png"))
        save_lesion_panel(out / "lesions.npz", lesion_panel(e, n_sheet))  # redraws comparisons without the checkpoint
    return e


def explain(checkpoint, data, *, out, split: str = "test", **kwargs: Any) -> Explanation:
    """Explain one checkpoint and write its files under ``out``."""
    e = explain_model(checkpoint, data, split=split, **kwargs)
    return write_explanation(e, out, class_names=e.class_names)


def compare_models(explanations: Dict[str, Explanation], out: Union[str, Path], *, n: int = 8) -> Path:
    """Side-by-side heatmaps of several models on the same first ``n`` lesions (same split, same order)."""
    return compare_panels({name: lesion_panel(e, n) for name, e in explanations.items()}, out)


def _resize(maps: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Heatmaps (N, h, w) at ``size``: a model tried at 2x input explains a 2x image, shown at the common size."""
    t = torch.from_numpy(maps.astype(np.float32))[:, None]
    if tuple(t.shape[-2:]) != tuple(size):
        t = torch.nn.functional.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False)
    return t[:, 0].numpy()


def compare_panels(panels: Dict[str, Dict[str, np.ndarray]], out: Union[str, Path]) -> Path:
    """``comparison.png`` from :func:`lesion_panel` s of several models, which must show the same images."""
    first = next(iter(panels.values()))
    if any(list(p["paths"]) != list(first["paths"]) for p in panels.values()):
        raise ValueError("models were explained on different images; use the same --data, --split and --limit")
    size = first["images"].shape[-2:]
    return model_comparison(Path(out) / "comparison.png", first["images"].astype(np.float32), first["masks"],
                            {name: _resize(p["cams"], size) for name, p in panels.items()},
                            heading="heatmap of the lesion class; green: lesion outline")
