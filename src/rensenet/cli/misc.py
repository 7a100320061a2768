"""``rensenet demo``: the whole workflow on the embedded sample."""
from __future__ import annotations

import argparse


from .args import add_weights_arguments, weights_of


def add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train, evaluate, explain and scan rensenet_s on the embedded samples")
    p.add_argument("--out", default="rensenet-demo", help="report folder")
    p.add_argument("--epochs", type=int, default=None, help="default: the demo's own setting")
    p.add_argument("--pretrained", action="store_true", help="use the shipped weights instead of training (seconds)")


def run_demo(a: argparse.Namespace) -> None:
    from ..demo import run_demo

    run_demo(out=a.out, epochs=a.epochs, pretrained=a.pretrained)


def add_export(sub: argparse._SubParsersAction) -> None:
    from ..export import FORMATS, OPSET

    p = sub.add_parser("export", help=f"a model as ONNX (opset {OPSET}) or TorchScript, BatchNorm folded")
    add_weights_arguments(p)
    p.add_argument("--format", choices=FORMATS, default="onnx")
    p.add_argument("--out", required=True, help="file to write")
    p.add_argument("--dense", action="store_true",
                   help="export the whole-image scanner (window logits at the model's reduction stride) instead")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")


def run_export(a: argparse.Namespace) -> None:
    from ..base import load_model
    from ..export import OPSET, export_model

    model, cfg = load_model(weights_of(a))
    path = export_model(model, cfg, a.out, fmt=a.format, dense=a.dense, force=a.force)
    print(f"wrote {path} ({a.format}{f', opset {OPSET}' if a.format == 'onnx' else ''}, "
          f"{'window logits' if a.dense else 'logits'}; normalisation and class names in its metadata)")
