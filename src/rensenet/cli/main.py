"""The ``rensenet`` command: train, evaluate, predict, explain, scan, benchmark and demo."""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Dict, List, Optional, Tuple

from . import benchmark, evaluate, misc, scan, train, view

#: name -> (add the sub-parser, run it)
COMMANDS: Dict[str, Tuple[Callable, Callable]] = {
    "train": (train.add, train.run),
    "evaluate": (evaluate.add_evaluate, evaluate.run_evaluate),
    "predict": (evaluate.add_predict, evaluate.run_predict),
    "explain": (evaluate.add_explain, evaluate.run_explain),
    "scan": (scan.add_scan, scan.run_scan),
    "evaluate-scans": (scan.add_evaluate_scans, scan.run_evaluate_scans),
    "benchmark": (benchmark.add, benchmark.run),
    "demo": (misc.add_demo, misc.run_demo),
    "export": (misc.add_export, misc.run_export),
    "view": (view.add, view.run),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rensenet", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    from ..base import CheckpointError
    from ..data import DataError, ImageReadError

    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command][1](args)
    except (DataError, ImageReadError, CheckpointError, FileExistsError, FileNotFoundError, ValueError) as e:
        print(f"rensenet {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
