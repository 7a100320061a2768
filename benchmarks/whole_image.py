"""Whole-image detection: the targets of the whole-image issue, as tables.

    python benchmarks/whole_image.py --kidney runs/scans/kidney/best.pt --lung runs/scans/lung/best.pt \
        > benchmarks/WHOLE_IMAGE.md

For each checkpoint (trained on the train split of its task, benchmarks/train_zoo.py):
1. Scan settings chosen on val (``rensenet.benchmark.scans``): candidates at the probability map's peak or
   CAM-refined with one or three heatmap peaks, at stride 4 or 8; the chosen ones and the best map peaks are
   reported on test (CPM with its patient-bootstrap interval, sensitivity at each rate).
2. Dense evaluation against exact tiling (``WindowScorer(exact=True)``, ``rensenet scan --exact``) on the test
   slices, at the same stride: seconds per slice of each, the difference of the window probabilities, and the CPM
   of each, with map peaks and with the weights' own (CAM-refined) settings.
3. A 300-slice 512 x 512 NIfTI volume scanned by ``rensenet scan`` in a child process: seconds and peak memory.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import pandas as pd
import torch

from rensenet.base import load_model, resolve_device
from rensenet.base.windows import WindowScorer
from rensenet.benchmark.processes import machine_description, run_child
from rensenet.benchmark.scans import choose_scan_settings, scan_split
from rensenet.data import image_paths, read_manifest, select_split
from rensenet.evaluation.scans import evaluate_scans
from rensenet.models import optimize_for_inference
from rensenet.scanning.run import ScanSettings

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def paths(task: str, split: str) -> Tuple[List[str], Path]:
    return image_paths(select_split(read_manifest(DATA / task), split)), DATA / task


def fmt(ci: Dict[str, float]) -> str:
    return f"{ci['value']:.3f} [{ci['ci_low']:.3f}, {ci['ci_high']:.3f}]"


def sens(froc: dict) -> str:
    return " / ".join(f"{v['value']:.2f}" for v in froc["sens_at_fp"].values())


def choose_and_report(ckpt: str, task: str) -> None:
    print(f"### {task}: scan settings chosen on val, reported on test\n")
    best, rows = choose_scan_settings(ckpt, DATA / task, split="val")
    print("| split | settings | CPM [95% CI] | sens at 1/8 .. 8 FP per image | s/slice |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| val | `{r['settings']}` | {fmt(r['cpm'])} | {sens(r)} | {r['seconds_per_slice']:.3f} |")
    plain = max((r for r in rows if r["settings"]["refine"] == "map"), key=lambda r: r["cpm"]["value"])["settings"]
    for settings in ([best, plain] if plain != best else [best]):
        froc, secs = scan_split(ckpt, DATA / task, "test", settings)
        mark = " (chosen)" if settings == best else " (best map peaks)"
        print(f"| **test** | `{settings}`{mark} | {fmt(froc['cpm'])} | {sens(froc)} | {secs:.3f} |", flush=True)
        if settings == best:
            chosen = froc
    print(f"\nChosen on val: `{best}`. Test, chosen: sensitivity at 2 FP per image "
          f"{chosen['sens_at_fp']['2']['value']:.3f}; by lesion size: " +
          ", ".join(f"{r['tercile']} ({r['min_px']:.0f}-{r['max_px']:.0f} px) CPM {r['cpm']:.3f}"
                    for r in chosen["by_lesion_size"]) + ".\n")


def dense_vs_tiled(ckpt: str, task: str, limit: Optional[int]) -> None:
    """Map peaks of the dense map and of exact tiling at strides 8 and 4 (the window scores compared), then the
    shipped settings (CAM-refined) on both maps: what the context a dense window sees costs a scan."""
    model, cfg = load_model(ckpt)
    fast = optimize_for_inference(copy.deepcopy(model))
    inputs, data = paths(task, "test")
    inputs = inputs[:limit]
    shipped = ScanSettings.for_weights(ckpt)
    print(f"### {task}: dense evaluation against exact tiling ({len(inputs)} test slices)\n")
    print("| candidates | stride | dense s/slice | tiled s/slice | speed-up | mean abs prob diff | max | correlation | "
          "CPM dense | CPM tiled |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    from rensenet.data.volumes import image_volume

    runs = [("map peaks", 8, dict(refine="map")), ("map peaks", 4, dict(refine="map")),
            (f"shipped: CAM, {shipped.cam_peaks} peak(s)", shipped.stride,
             dict(refine=shipped.refine, cam_peaks=shipped.cam_peaks))]
    for label, stride, how in runs:
        rows = {}
        for name, exact in (("dense", False), ("tiled", True)):
            scorer = WindowScorer(fast, cfg, stride=stride, device=resolve_device("cpu"), exact=exact)
            cands, maps, secs = [], [], 0.0
            for p in inputs:
                image = image_volume(p).read(0)[None]
                t = time.perf_counter()
                wmap, _, peaks = scorer.candidates(image, **how)
                secs += time.perf_counter() - t
                maps.append(wmap.probs)
                cands += [{"path": p, "x": pk.x, "y": pk.y, "score": pk.score} for pk in peaks]
            froc = evaluate_scans(pd.DataFrame(cands), data, split="test", n_boot=10)
            rows[name] = (secs / len(inputs), maps, froc["cpm"]["value"])
        d, t = rows["dense"], rows["tiled"]
        diffs = np.concatenate([np.abs(a - b).ravel() for a, b in zip(d[1], t[1])])
        corr = np.mean([np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(d[1], t[1])])
        print(f"| {label} | {stride} | {d[0]:.3f} | {t[0]:.3f} | {t[0] / d[0]:.0f}x | {diffs.mean():.4f} | "
              f"{diffs.max():.3f} | {corr:.3f} | {d[2]:.3f} | {t[2]:.3f} |", flush=True)
    print("\n(Seconds per slice: the window map, its peaks and the heatmaps of the candidates' windows, in this "
          "process; `rensenet scan` adds reading and writing.)\n")


def volume_speed(ckpt: str, slices: int, size: int) -> None:
    import nibabel as nib

    with tempfile.TemporaryDirectory() as tmp:
        vol = np.random.default_rng(0).normal(-200, 300, (size, size, slices)).astype(np.int16)
        nib.save(nib.Nifti1Image(vol, np.diag([0.7, 0.7, 1.0, 1.0])), f"{tmp}/vol.nii.gz")
        seconds, peak_mb = run_child([sys.executable, "-m", "rensenet", "scan", "--checkpoint", ckpt,
                                      f"{tmp}/vol.nii.gz", "--out", f"{tmp}/out", "--window", "abdomen",
                                      "--plane", "axial", "--no-progress"], Path(tmp) / "log.txt")
        images = pd.read_csv(f"{tmp}/out/images.csv")
    print(f"### A {slices}-slice {size} x {size} volume (NIfTI, noise in HU), `rensenet scan` in a child process\n")
    print("| slices | seconds in all | scan seconds per slice | peak memory (MB) |")
    print("|---|---|---|---|")
    print(f"| {slices} | {seconds:.1f} | {images.seconds_per_slice.iloc[0]:.3f} | {peak_mb:.0f} |\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kidney", help="checkpoint trained on kidney-stone-scans")
    ap.add_argument("--lung", help="checkpoint trained on lung-nodule-scans")
    ap.add_argument("--volume-slices", type=int, default=300)
    ap.add_argument("--tiled-slices", type=int, default=None,
                    help="test slices for the dense vs tiled comparison (default: all; FROC counts the rest as missed)")
    ap.add_argument("--parts", nargs="+", default=["choose", "dense", "volume"], choices=["choose", "dense", "volume"],
                    help="which tables to print (all by default)")
    a = ap.parse_args()
    print(f"# Whole-image detection ({date.today().isoformat()})\n")
    print(f"Machine: {machine_description(cpu=True)}, {torch.get_num_threads()} threads. Command: "
          f"`python benchmarks/whole_image.py {' '.join(sys.argv[1:])}`.\n")
    for task, ckpt in (("kidney-stone-scans", a.kidney), ("lung-nodule-scans", a.lung)):
        if ckpt:
            cfg = json.dumps({k: v for k, v in load_model(ckpt)[1].to_dict().items() if k in (
                "model", "patch_size", "epochs", "windows_per_image", "pos_fraction", "hard_negatives",
                "hard_fraction", "lr", "seed")})
            print(f"## {task}\n\nCheckpoint `{ckpt}`: {cfg}\n")
            if "choose" in a.parts:
                choose_and_report(ckpt, task)
            if "dense" in a.parts:
                dense_vs_tiled(ckpt, task, a.tiled_slices)
    if a.kidney and "volume" in a.parts:
        volume_speed(a.kidney, a.volume_slices, 512)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count()))
    main()
