"""``rensenet evaluate``: a checkpoint on a manifest split -> metrics.json, predictions.csv and figures."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Union

import pandas as pd
from torch.utils.data import DataLoader

from ..base import load_model, predict_probs, resolve_device
from ..base.datasets import make_dataset
from ..base.io import write_csv, write_json
from ..data import DataError, read_manifest, select_split
from .classification import bootstrap_by_patient, per_class_metrics, sensitivity_by_lesion_size
from .plots import plot_confusion_matrix, plot_roc


def evaluate(
    checkpoint: Union[str, Path],
    data: Union[str, Path],
    *,
    split: str = "test",
    out: Optional[Union[str, Path]] = None,
    n_boot: int = 1000,
    batch_size: int = 64,
    device: str = "auto",
    seed: int = 0,
) -> Dict[str, Any]:
    """Scores of ``checkpoint`` on ``split`` (or ``"all"``) of ``data``; files are written when ``out`` is set."""
    dev = resolve_device(device)
    model, cfg = load_model(checkpoint, dev)
    names = cfg.class_names
    frame = select_split(read_manifest(data), split)
    if int(frame["label"].max()) >= cfg.num_classes:
        bad = frame[frame["label"] >= cfg.num_classes].iloc[0]
        raise DataError(f"{frame.attrs['source']}, line {bad['_line']}: label {bad['label']} is outside the "
                        f"checkpoint's {cfg.num_classes} classes {names}")
    dataset = make_dataset(frame, cfg)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    probs, labels, _ = predict_probs(model, loader, dev)
    preds = probs.argmax(1)
    metrics: Dict[str, Any] = {
        "checkpoint": str(checkpoint), "data": str(data), "split": split, "model": cfg.model,
        "n": int(len(labels)), "n_patients": int(frame["patient_id"].nunique()),
        "class_names": names, "n_boot": n_boot, "confidence": 0.95,
        **bootstrap_by_patient(labels, probs, frame["patient_id"].to_numpy(), n_boot=n_boot, seed=seed),
    }
    if len(names) > 2:
        metrics["per_class"] = per_class_metrics(labels, probs, names)
    if len(names) == 2 and frame["lesion_px"].notna().any():
        metrics["sensitivity_by_lesion_size"] = sensitivity_by_lesion_size(labels, preds, frame["lesion_px"].to_numpy())
    if out is not None:
        out = Path(out)
        table = pd.DataFrame({"path": frame["path"], "patient_id": frame["patient_id"], "label": labels,
                              "pred": preds, **{f"prob_{n}": probs[:, i] for i, n in enumerate(names)}})
        if frame["lesion_px"].notna().any():
            table["lesion_px"] = frame["lesion_px"]
        write_csv(out / "predictions.csv", table)
        write_json(out / "metrics.json", metrics)
        plot_confusion_matrix(out / "confusion_matrix.png", labels, preds, names)
        plot_roc(out / "roc_curve.png", labels, probs, names)
    return metrics


def format_metrics(metrics: Dict[str, Any]) -> str:
    """A short text table: metric, value, 95 % interval."""
    lines = [f"{metrics['model']} on {metrics['split']} (n={metrics['n']}, {metrics['n_patients']} patients)"]
    for k in ("auc", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "precision", "f1", "pr_auc"):
        m = metrics[k]
        lines.append(f"  {k:<18} {m['value']:.4f}  [{m['ci_low']:.4f}, {m['ci_high']:.4f}]")
    for row in metrics.get("sensitivity_by_lesion_size", []):
        lines.append(f"  sensitivity {row['tercile']:<6} ({row['min_px']:.0f}-{row['max_px']:.0f} px, n={row['n']}) "
                     f"{row['sensitivity']:.4f}")
    return "\n".join(lines)
