"""``rensenet scan`` and ``rensenet evaluate-scans``: candidates in whole slices and volumes, and their FROC."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .args import add_config_arguments, add_weights_arguments, config_from_args, weights_of


def add_scan(sub: argparse._SubParsersAction) -> None:
    from ..scanning.run import ScanSettings

    p = sub.add_parser("scan", help="find lesions in whole images, DICOM series and NIfTI volumes (candidates.csv, "
                                    "maps, overlays, report.md)",
                       description="Scan whole slices at their native size with a window classifier. Give files "
                                   "and folders, or --data/--split to scan a manifest split and score its FROC.")
    add_weights_arguments(p)
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="image files, DICOM files, series folders, NIfTI")
    p.add_argument("--out", required=True, help="folder for candidates.csv, images.csv, maps/, overlays/, report.md")
    p.add_argument("--data", default=None, help="a manifest of whole images: scan its --split and score the FROC")
    p.add_argument("--split", default="test", help="with --data: the split to scan and score (default: test)")
    p.add_argument("--tolerance", type=float, default=None, help="FROC hit distance outside a lesion box, px (4)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--force", action="store_true",
                       help="--out holds an earlier scan: replace its outputs (nothing else in the folder)")
    again.add_argument("--resume", action="store_true",
                       help="--out holds an earlier scan with the same weights and settings: keep the inputs it "
                            "finished and scan the rest")
    add_config_arguments(p, ScanSettings, config=False, from_weights=True)


def run_scan(a: argparse.Namespace) -> int:
    from ..data import image_paths, read_manifest, select_split
    from ..scanning.run import ScanSettings, scan

    weights = weights_of(a)
    given = config_from_args(a, ScanSettings, only_given=True)
    settings = ScanSettings.for_weights(weights, **given)  # the weights' val-chosen settings unless overridden
    if bool(a.inputs) == bool(a.data):
        raise ValueError("give the inputs to scan, or --data (and --split) to scan a manifest split, not both")
    inputs = a.inputs
    if a.data:
        frame = select_split(read_manifest(a.data), a.split)
        inputs = image_paths(frame)
    if_exists = "overwrite" if a.force else "resume" if a.resume else "error"
    result = scan(weights, inputs, out=a.out, settings=settings, if_exists=if_exists)
    print(f"scanned {len(result.images) - len(result.errors)} inputs ({result.seconds_per_slice:.3f} s per slice): "
          f"{len(result.candidates)} candidates in {Path(a.out) / 'candidates.csv'}")
    if result.errors:
        print(f"{len(result.errors)} input(s) failed and were skipped; images.csv says why")
    if len(result.errors) == len(result.images):
        print(f"rensenet scan: error: every input failed ({len(result.errors)}); nothing was scanned", file=sys.stderr)
        return 1
    if a.data:
        froc = _evaluate(Path(a.out) / "candidates.csv", a.data, a.split, a.tolerance, a.out)
        _add_to_report(Path(a.out) / "report.md", froc)
    return 0


def _evaluate(candidates, data, split, tolerance, out) -> str:
    from ..evaluation.scans import DEFAULT_TOLERANCE, evaluate_scans, format_froc

    result = evaluate_scans(candidates, data, split=split, tolerance=tolerance or DEFAULT_TOLERANCE, out=out)
    text = format_froc(result)
    print(text)
    print(f"wrote {Path(out) / 'froc.json'} and froc.png")
    return text


def _add_to_report(report: Path, froc: str) -> None:
    from ..base.io import write_text

    text = report.read_text()
    head, sep, rest = text.partition("\n\n| input |")
    write_text(report, f"{head}\n\n```\n{froc}\n```\n\n![FROC](froc.png){sep}{rest}")


def add_evaluate_scans(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate-scans", help="FROC of a scan's candidates against a manifest's lesion boxes")
    p.add_argument("--candidates", required=True, help="the candidates.csv `rensenet scan` wrote")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--out", required=True, help="folder for froc.json and froc.png")
    p.add_argument("--tolerance", type=float, default=None,
                   help="px a candidate may lie outside a lesion's box and still hit it (default 4)")


def run_evaluate_scans(a: argparse.Namespace) -> None:
    _evaluate(a.candidates, a.data, a.split, a.tolerance, a.out)
