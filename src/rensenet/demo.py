"""``rensenet demo``: the whole workflow on the embedded lung-nodule sample, on a CPU, in a few minutes."""
from __future__ import annotations

import time
from importlib import resources
from pathlib import Path
from typing import Optional, Union

from .base import TrainConfig
from .base.io import write_text
from .evaluation.report import evaluate, format_metrics
from .training import train

DEMO_EPOCHS = 12


def sample_root() -> Path:
    """The embedded samples, one folder per task in the benchmark data's format (each with its ATTRIBUTION.md):
    lung-nodule-ct and lung-nodule-scans (LIDC-IDRI, CC BY 3.0), kidney-stone-scans (TEZ_ROI_AUG, CC BY 4.0)."""
    return Path(str(resources.files("rensenet") / "data" / "sample"))


def sample_data_dir(task: str = "lung-nodule-ct") -> Path:
    """One embedded sample task."""
    return sample_root() / task


def _fresh_dir(out: Path) -> Path:
    if not out.exists() or not any(out.iterdir()):
        return out
    i = 2
    while Path(f"{out}-{i}").exists():
        i += 1
    return Path(f"{out}-{i}")


def run_demo(out: Union[str, Path] = "rensenet-demo", epochs: Optional[int] = None, *, progress: bool = True) -> Path:
    """Train rensenet_s on the sample, evaluate it on the sample's held-out patients, explain, and report."""
    data = sample_data_dir()
    out = _fresh_dir(Path(out))
    start = time.time()
    print(f"rensenet demo: training rensenet_s on {data.name} (embedded sample) -> {out}")
    cfg = TrainConfig(data=str(data), model="rensenet_s", out=str(out / "run"), epochs=epochs or DEMO_EPOCHS,
                      seed=0, progress=progress)
    result = train(cfg)
    metrics = evaluate(out / "run" / "best.pt", data, split="test", out=out / "evaluation", n_boot=500)
    text = format_metrics(metrics)
    print(text)
    figures, localization = _explain(out, data)
    minutes = (time.time() - start) / 60
    report = [
        "# rensenet demo", "",
        f"`rensenet_s` trained for {len(result.history)} epochs on the embedded lung-nodule sample "
        f"(LIDC-IDRI, CC BY 3.0), best {result.selection.replace('_', ' ')} {result.best_score:.3f} at epoch {result.best_epoch}; "
        f"scored on the sample's {metrics['n_patients']} held-out test patients ({minutes:.1f} min in all).", "",
        "```", text, "```", "",
        *(["Heatmaps (HiResCAM) against the radiologists' nodule masks:", "", "```", localization, "```", ""]
          if localization else []),
        "![ROC](evaluation/roc_curve.png) ![Confusion matrix](evaluation/confusion_matrix.png)", "",
        *[f"![{name}]({rel})" for name, rel in figures],
        "", "Files: `run/` (checkpoints, history), `evaluation/` (metrics.json, predictions.csv)"
        + (", `explanation/` (heatmaps, localization.json)" if figures else "") + ".",
    ]
    write_text(out / "report.md", "\n".join(report) + "\n")
    print(f"\nreport: {out / 'report.md'}  ({minutes:.1f} min)")
    return out


def _explain(out: Path, data: Path) -> tuple:
    """Figures and localisation scores of the heatmaps on the first 64 test images."""
    from .explanation.run import explain
    from .explanation.scores import format_localization

    result = explain(out / "run" / "best.pt", data, split="test", out=out / "explanation", limit=64, n_boot=500)
    text = format_localization(result.localization) if result.localization.get("n_lesions") else ""
    if text:
        print(text)
    return [(name, str(Path("explanation") / rel)) for name, rel in result.figures], text
