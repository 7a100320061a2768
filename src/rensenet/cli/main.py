"""The ``rensenet`` command: train, evaluate, predict, explain and demo."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

from ..data import AUGMENTATIONS


def _add_train(sub: argparse._SubParsersAction) -> None:
    from ..training import TrainConfig

    d = TrainConfig(data="")
    p = sub.add_parser("train", help="train a RenseNet or any timm model on a manifest or class folders",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", required=True, help="folder with manifest.csv (or class sub-folders), or a CSV file")
    p.add_argument("--model", default=d.model, help="rensenet_s, rensenet_m or any timm model name")
    p.add_argument("--out", required=True, help="output folder (config.json, history.csv, last.pt, best.pt)")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch, split among processes")
    p.add_argument("--img-size", type=int, default=None, help="model input size (default: the images' own size)")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--optimizer", choices=("sgd", "adamw"), default=d.optimizer)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--scheduler", choices=("cosine", "constant"), default=d.scheduler)
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--augment", choices=AUGMENTATIONS, default=d.augment)
    p.add_argument("--in-chans", type=int, default=d.in_chans, help="1 for slices, 3 to repeat them (2.5D NIfTI)")
    p.add_argument("--window", default=None, help="CT window for DICOM: lung, abdomen, bone, brain or W,L")
    p.add_argument("--train-split", default=d.train_split)
    p.add_argument("--val-split", default=d.val_split)
    p.add_argument("--model-kwargs", type=json.loads, default={}, help='JSON, e.g. \'{"ecm": false}\'')
    p.add_argument("--early-stopping", type=int, default=0, metavar="EPOCHS", help="patience on val AUC; 0 = off")
    p.add_argument("--workers", type=int, default=d.workers, help="data loader processes")
    p.add_argument("--device", default="auto")
    p.add_argument("--channels-last", action="store_true",
                   help="NHWC memory: same results up to rounding; faster on some machines (see benchmarks/PERF.md)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")


def _run_train(a: argparse.Namespace) -> None:
    from ..training import TrainConfig, train

    cfg = TrainConfig(
        data=a.data, model=a.model, out=a.out, epochs=a.epochs, batch_size=a.batch_size, img_size=a.img_size,
        lr=a.lr, optimizer=a.optimizer, weight_decay=a.weight_decay, scheduler=a.scheduler,
        warmup_epochs=a.warmup_epochs, seed=a.seed, augment=a.augment, in_chans=a.in_chans, window=a.window,
        train_split=a.train_split, val_split=a.val_split, model_kwargs=a.model_kwargs,
        early_stopping=a.early_stopping, workers=a.workers, device=a.device, progress=not a.no_progress,
        resume=a.resume, channels_last=a.channels_last,
    )
    train(cfg)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score a checkpoint on a split, with patient-bootstrap 95%% intervals")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test", help="a value of the manifest's split column, or 'all'")
    p.add_argument("--out", required=True)
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples of patients")
    p.add_argument("--device", default="auto")


def _run_evaluate(a: argparse.Namespace) -> None:
    from ..evaluation.report import evaluate, format_metrics

    metrics = evaluate(a.checkpoint, a.data, split=a.split, out=a.out, n_boot=a.n_boot, device=a.device)
    print(format_metrics(metrics))
    print(f"wrote {Path(a.out) / 'metrics.json'}, predictions.csv, confusion_matrix.png, roc_curve.png")


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="class probabilities for image, DICOM or NIfTI files and folders")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--out", default="predictions.csv", help="CSV to write")
    p.add_argument("--window", default=None, help="CT window for DICOM/NIfTI (default: the training run's, else abdomen)")
    p.add_argument("--device", default="auto")


def _run_predict(a: argparse.Namespace) -> None:
    from ..evaluation.inference import predict_files
    from ..io import write_csv
    from ..training.checkpoint import load_model
    from ..training.distributed import resolve_device

    device = resolve_device(a.device)
    model, cfg = load_model(a.checkpoint, device)
    table = predict_files(model, cfg, a.paths, window=a.window, device=device)
    write_csv(a.out, table)
    print(f"wrote {len(table)} predictions to {a.out}")


def _add_explain(sub: argparse._SubParsersAction) -> None:
    from ..explanation import CAM_METHODS
    from ..explanation.run import DEFAULT_METHOD

    p = sub.add_parser("explain", help="CAM heatmaps scored against lesion masks (pointing game, energy lift)")
    p.add_argument("--checkpoint", required=True, nargs="+", help="one or more; several also give comparison.png")
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


def _run_explain(a: argparse.Namespace) -> None:
    from ..explanation import compare_models, explain_model, write_explanation
    from ..explanation.scores import format_localization
    from ..training.checkpoint import load_model

    explanations = {}
    for ckpt in a.checkpoint:
        e = explain_model(ckpt, a.data, split=a.split, method=a.method, target_layers=a.target_layer,
                          class_mode=a.class_mode, limit=a.limit, tolerance=a.tolerance, threshold=a.threshold,
                          faithfulness=not a.no_faithfulness, n_boot=a.n_boot, device=a.device)
        name = e.model_name if e.model_name not in explanations else f"{e.model_name}-{len(explanations) + 1}"
        out = Path(a.out) / name if len(a.checkpoint) > 1 else Path(a.out)
        write_explanation(e, out, class_names=load_model(ckpt)[1]["class_names"])
        explanations[name] = e
        print(f"{name} ({e.method} on {', '.join(e.target_layers)}): {out}")
        if e.localization.get("n_lesions"):
            print(format_localization(e.localization))
            if "road_combined" in e.localization:
                print(f"  ROAD combined (faithfulness, higher is better): {e.localization['road_combined']:.4f}")
    if len(explanations) > 1:
        print(f"comparison: {compare_models(explanations, a.out)}")


def _add_benchmark(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("benchmark", help="train, evaluate, explain and cost every model on every task (resumable)")
    p.add_argument("--config", required=True, help="YAML file, e.g. benchmarks/full.yaml")
    p.add_argument("--models", nargs="+", default=None, help="only these model entries (run in pieces)")
    p.add_argument("--tasks", nargs="+", default=None, help="only these tasks")
    p.add_argument("--jobs", type=int, default=1,
                   help="(task, model) units run at once, each in its own process (for a GPU or many cores)")
    p.add_argument("--parallel-runs", type=int, default=1,
                   help="training runs of one unit at once (sweep points, then seeds): a GPU idles under one small run")
    p.add_argument("--no-cost", action="store_true",
                   help="skip the CPU cost measurements (e.g. training on a GPU; add them later with --costs-only)")
    p.add_argument("--costs-only", action="store_true",
                   help="only measure, on this machine, the cost of every model that has results")
    p.add_argument("--report-only", action="store_true", help="rewrite the report from the finished runs")
    p.add_argument("--sweep-only", action="store_true",
                   help="run the sweep points the config lists that have not run (after the grid grew), finished "
                        "units included, choose again, and name the seeds trained at another choice")
    p.add_argument("--drop-stale", action="store_true",
                   help="with --sweep-only: set those seeds aside (to <out>/superseded, and out of results.json), "
                        "so that the next run trains them at the new choice")
    p.add_argument("--no-report", action="store_true", help="do not write the report")


def _run_benchmark(a: argparse.Namespace) -> None:
    from ..benchmark import BenchmarkConfig, add_costs, report, run_benchmark, save_results, sweep_units

    cfg = BenchmarkConfig.load(a.config)
    if a.drop_stale and not a.sweep_only:
        raise ValueError("--drop-stale goes with --sweep-only (it sets aside the seeds a new sweep choice made stale)")
    if a.sweep_only:
        stale = sweep_units(cfg, only_models=a.models, only_tasks=a.tasks, parallel_runs=a.parallel_runs,
                            drop_stale=a.drop_stale)
        hint = "" if a.drop_stale else " (--drop-stale sets them aside; then run the benchmark again)"
        print(f"seeds trained at another choice{hint}:\n  " + "\n  ".join(stale) if stale
              else "every recorded seed was trained at the current choice")
        return
    if a.report_only:
        records = save_results(cfg)
    elif a.costs_only:
        records = add_costs(cfg)
    else:
        records = run_benchmark(cfg, only_models=a.models, only_tasks=a.tasks, cost=not a.no_cost, jobs=a.jobs,
                                parallel_runs=a.parallel_runs, config_path=a.config)
    if not a.no_report:
        report(cfg, records)
    print(f"{len(records)} runs in {cfg.results}" + ("" if a.no_report else f"; report: {cfg.report}"))


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train and evaluate rensenet_s on the embedded lung-nodule sample")
    p.add_argument("--out", default="rensenet-demo", help="report folder")
    p.add_argument("--epochs", type=int, default=None, help="default: the demo's own setting")


def _run_demo(a: argparse.Namespace) -> None:
    from ..demo import run_demo

    run_demo(out=a.out, epochs=a.epochs)


COMMANDS = {"train": (_add_train, _run_train), "evaluate": (_add_evaluate, _run_evaluate),
            "predict": (_add_predict, _run_predict), "explain": (_add_explain, _run_explain),
            "benchmark": (_add_benchmark, _run_benchmark), "demo": (_add_demo, _run_demo)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rensenet", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    from ..data import DataError, ImageReadError
    from ..training import CheckpointError

    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command][1](args)
    except (DataError, ImageReadError, CheckpointError, FileExistsError, FileNotFoundError, ValueError) as e:
        print(f"rensenet {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
