"""``rensenet demo``: the whole workflow on the embedded sample."""
from __future__ import annotations

import argparse


def add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train, evaluate, explain and scan rensenet_s on the embedded sample")
    p.add_argument("--out", default="rensenet-demo", help="report folder")
    p.add_argument("--epochs", type=int, default=None, help="default: the demo's own setting")


def run_demo(a: argparse.Namespace) -> None:
    from ..demo import run_demo

    run_demo(out=a.out, epochs=a.epochs)
