"""``rensenet demo``: the whole workflow on the embedded samples, on a CPU, in a few minutes.

1. Windows: ``rensenet_s`` learns "is there a nodule in this 48-px window?" on the lung-nodule sample, is scored
   on its held-out patients with patient-bootstrap intervals, and its heatmaps against the nodule masks.
2. Whole images: ``rensenet_s`` learns from whole coronal kidney slices (64-px windows sampled on the fly, hard
   negatives mined after each epoch), then scans the held-out studies' whole slices: FROC and overlays.
"""
from __future__ import annotations

import time
from importlib import resources
from pathlib import Path
from typing import Optional, Union

from .base import TrainConfig, weights_file
from .base.io import write_text
from .evaluation.report import evaluate, format_metrics
from .training import train

DEMO_EPOCHS = 12
SCAN_EPOCHS = 6


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


#: The shipped weights ``rensenet demo --pretrained`` uses instead of training.
PRETRAINED = {"windows": "rensenet_s.lidc_nodule_window", "scans": "rensenet_s.kidney_stone_scan"}


def run_demo(out: Union[str, Path] = "rensenet-demo", epochs: Optional[int] = None, *, scan_epochs: Optional[int] = None,
             pretrained: bool = False, progress: bool = True) -> Path:
    """Both parts, one report: ``out/report.md``. ``pretrained`` uses the shipped weights instead of training."""
    out = _fresh_dir(Path(out))
    start = time.time()
    windows = _windows(out, epochs or DEMO_EPOCHS, progress, PRETRAINED["windows"] if pretrained else None)
    scans = _whole_images(out, scan_epochs or SCAN_EPOCHS, progress, PRETRAINED["scans"] if pretrained else None)
    minutes = (time.time() - start) / 60
    write_text(out / "report.md", "\n".join(["# rensenet demo", "", f"{minutes:.1f} minutes in all.", "",
                                             *windows, "", *scans]) + "\n")
    print(f"\nreport: {out / 'report.md'}  ({minutes:.1f} min)")
    return out


def _trained(tag: Optional[str], cfg: TrainConfig) -> tuple:
    """(checkpoint, sentence on how it was made): shipped weights, or a run trained now."""
    if tag is not None:
        return weights_file(tag=tag), f"the shipped weights `{tag}` (docs/models/{tag}.md)"
    result = train(cfg)
    return Path(cfg.out) / "best.pt", (f"`rensenet_s` trained for {len(result.history)} epochs (best "
                                       f"{result.selection.replace('_', ' ')} {result.best_score:.3f} at epoch "
                                       f"{result.best_epoch})")


def _windows(out: Path, epochs: int, progress: bool, tag: Optional[str] = None) -> list:
    from .explanation.run import explain
    from .explanation.scores import format_localization

    data = sample_data_dir("lung-nodule-ct")
    print(f"rensenet demo 1/2: rensenet_s on {data.name} windows (embedded sample) -> {out / 'windows'}")
    ckpt, made = _trained(tag, TrainConfig(data=str(data), model="rensenet_s", out=str(out / "windows" / "run"),
                                           epochs=epochs, seed=0, progress=progress, window="lung"))
    metrics = evaluate(ckpt, data, split="test", out=out / "windows" / "evaluation", n_boot=500)
    text = format_metrics(metrics)
    print(text)
    e = explain(ckpt, data, split="test", out=out / "windows" / "explanation", limit=64, n_boot=500)
    localization = format_localization(e.localization) if e.localization.get("n_lesions") else ""
    print(localization)
    return [
        "## 1. Is there a nodule in this window? (lung-nodule-ct sample)", "",
        f"{made}, on 48-px windows of the embedded LIDC-IDRI sample (CC BY 3.0); scored on the sample's "
        f"{metrics['n_patients']} held-out test patients.", "",
        "```", text, "```", "",
        *(["Heatmaps (HiResCAM) against the radiologists' nodule masks:", "", "```", localization, "```", ""]
          if localization else []),
        "![ROC](windows/evaluation/roc_curve.png) ![lesions](windows/explanation/lesions.png)",
    ]


def _whole_images(out: Path, epochs: int, progress: bool, tag: Optional[str] = None) -> list:
    from .cli.scan import _add_to_report
    from .data import image_paths, read_manifest, select_split
    from .evaluation.scans import evaluate_scans, format_froc
    from .scanning.run import ScanSettings, scan

    data = sample_data_dir("kidney-stone-scans")
    run = out / "scans" / "run"
    print(f"\nrensenet demo 2/2: rensenet_s from whole {data.name} slices -> {out / 'scans'}")
    ckpt, made = _trained(tag, TrainConfig(data=str(data), model="rensenet_s", out=str(run), epochs=epochs, seed=0,
                                           progress=progress, patch_size=64, windows_per_image=16,
                                           pos_fraction=0.25, hard_negatives=4))
    test = select_split(read_manifest(data), "test")
    inputs = image_paths(test)
    scanned = scan(ckpt, inputs, out=out / "scans" / "scan", settings=ScanSettings.for_weights(ckpt, progress=progress))
    froc = evaluate_scans(out / "scans" / "scan" / "candidates.csv", data, split="test", out=out / "scans" / "scan",
                          n_boot=500)
    text = format_froc(froc)
    print(text)
    _add_to_report(out / "scans" / "scan" / "report.md", text)
    best = scanned.candidates.sort_values("score", ascending=False)
    overlay = f"scans/scan/overlays/{Path(best.iloc[0]['path']).stem}.png" if len(best) else ""
    return [
        "## 2. Where are the stones in this slice? (kidney-stone-scans sample)", "",
        f"{made}" + ("" if tag else f", from the {len(select_split(read_manifest(data), 'train'))} whole coronal "
                     "training slices of the sample (64-px windows sampled on the fly, hard negatives mined after "
                     "each epoch)") + "; it scanned the "
        f"{froc['n_images']} whole slices of the {froc['n_patients']} held-out test studies at "
        f"{scanned.seconds_per_slice:.2f} s per slice ([scan report](scans/scan/report.md)).", "",
        "```", text, "```", "", "![FROC](scans/scan/froc.png)", *([f"![top candidate]({overlay})"] if overlay else []),
    ]
