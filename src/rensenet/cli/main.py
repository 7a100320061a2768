"""The ``rensenet`` command: train, evaluate, predict, explain, scan, benchmark and demo."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
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
    from importlib.metadata import PackageNotFoundError, version

    parser = argparse.ArgumentParser(prog="rensenet", description=__doc__)
    try:
        parser.add_argument("--version", action="version", version=f"rensenet {version('rensenet')}")
    except PackageNotFoundError:  # run from a source tree that was never installed
        parser.add_argument("--version", action="version", version="rensenet (not installed)")
    sub = parser.add_subparsers(dest="command", required=True)
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def _exit_on_sigterm(signum: int, frame) -> None:
    """SIGTERM ends a command as Ctrl-C does, through the interpreter's exit, so that temporary files (an unpacked
    .nii.gz, the viewer's uploads) are removed; the default action would kill the process where it stands."""
    raise SystemExit(128 + signum)


def main(argv: Optional[List[str]] = None) -> int:
    from ..base import CheckpointError
    from ..data import DataError, ImageReadError

    args = build_parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return int(COMMANDS[args.command][1](args) or 0)
    except (DataError, ImageReadError, CheckpointError, FileExistsError, FileNotFoundError, ValueError) as e:
        print(f"rensenet {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
