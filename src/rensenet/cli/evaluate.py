"""``rensenet evaluate``, ``predict`` and ``explain``: a checkpoint on a manifest split or on files."""
from __future__ import annotations

import argparse
from pathlib import Path

from .args import add_weights_arguments, weights_of


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score a checkpoint on a split, with patient-bootstrap 95%% intervals")
    add_weights_arguments(p)
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test", help="a value of the manifest's split column, or 'all'")
    p.add_argument("--out", required=True)
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples of patients")
    p.add_argument("--device", default="auto")


def run_evaluate(a: argparse.Namespace) -> None:
    from ..evaluation.report import evaluate, format_metrics

    metrics = evaluate(weights_of(a), a.data, split=a.split, out=a.out, n_boot=a.n_boot, device=a.device)
    print(format_metrics(metrics))
    print(f"wrote {Path(a.out) / 'metrics.json'}, predictions.csv, confusion_matrix.png, roc_curve.png")


def add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="class probabilities of window-sized images, DICOM or NIfTI slices "
                                       "(whole slices: use `rensenet scan`)")
    add_weights_arguments(p)
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--out", default="predictions.csv", help="CSV to write")
    p.add_argument("--window", default=None, help="CT window for DICOM/NIfTI (default: the checkpoint's)")
    p.add_argument("--allow-modality", nargs="+", default=(), metavar="MODALITY",
                   help="DICOM modalities other than CT to accept (scaled per image, never HU-windowed)")
    p.add_argument("--device", default="auto")


def run_predict(a: argparse.Namespace) -> None:
    from ..base import load_model, resolve_device
    from ..base.io import write_csv
    from ..scanning.predict import predict_files

    device = resolve_device(a.device)
    model, cfg = load_model(weights_of(a), device)
    table = predict_files(model, cfg, a.paths, window=a.window, allow_modality=a.allow_modality, device=device)
    write_csv(a.out, table)
    print(f"wrote {len(table)} predictions to {a.out}")


def add_explain(sub: argparse._SubParsersAction) -> None:
    from ..explanation import CAM_METHODS
    from ..explanation.run import DEFAULT_METHOD

    p = sub.add_parser("explain", help="CAM heatmaps scored against lesion masks (pointing game, energy lift)")
    add_weights_arguments(p, multiple=True)
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--out", required=True)
    p.add_argument("--method", choices=sorted(CAM_METHODS), default=DEFAULT_METHOD)
    p.add_argument("--target-layer", nargs="+", default=None, metavar="NAME",
                   help="module name(s), e.g. fusion, stages.1, ecm.stages.0.conv2, layer4 (default: per model)")
    p.add_argument("--class", dest="class_mode", default="predicted", help="predicted, true or a class index")
    p.add_argument("--limit", type=int, default=None, help="explain only the first N images of the split")
    p.add_argument("--tolerance", type=float, default=0.0, help="pointing-game tolerance in pixels")
    p.add_argument("--threshold", type=float, default=0.5, help="fraction of the maximum for IoU/Dice")
    p.add_argument("--no-faithfulness", action="store_true", help="skip the ROAD faithfulness score")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--device", default="auto")


def run_explain(a: argparse.Namespace) -> None:
    from ..explanation import compare_models, explain_model, write_explanation
    from ..explanation.scores import format_localization

    explanations = {}
    for ckpt in weights_of(a):
        e = explain_model(ckpt, a.data, split=a.split, method=a.method, target_layers=a.target_layer,
                          class_mode=a.class_mode, limit=a.limit, tolerance=a.tolerance, threshold=a.threshold,
                          faithfulness=not a.no_faithfulness, n_boot=a.n_boot, device=a.device)
        name = e.model_name if e.model_name not in explanations else f"{e.model_name}-{len(explanations) + 1}"
        out = Path(a.out) / name if len(weights_of(a)) > 1 else Path(a.out)
        write_explanation(e, out, class_names=e.class_names)
        explanations[name] = e
        print(f"{name} ({e.method} on {', '.join(e.target_layers)}): {out}")
        if e.localization.get("n_lesions"):
            print(format_localization(e.localization))
            if "road_combined" in e.localization:
                print(f"  ROAD combined (faithfulness, higher is better): {e.localization['road_combined']:.4f}")
    if len(explanations) > 1:
        print(f"comparison: {compare_models(explanations, a.out)}")
