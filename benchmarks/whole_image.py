"""Whole-image detection: the targets of the whole-image issue, as tables.

    python benchmarks/whole_image.py --kidney src/rensenet/weights/rensenet_s.kidney_stone_scan.pt \
        --lung src/rensenet/weights/rensenet_s.lidc_nodule_scan.pt --kidney-tiled 20 3 --lung-tiled 0 60 \
        > benchmarks/WHOLE_IMAGE.md

For each checkpoint (trained on the train split of its task, benchmarks/train_zoo.py):
1. Scan settings chosen on val (``rensenet.benchmark.scans``): candidates at the probability map's peak or
   CAM-refined with one or three heatmap peaks, at stride 4 or 8; the chosen ones and the best map peaks are
   reported on test (CPM with its patient-bootstrap interval, sensitivity at each rate).
2. Dense evaluation against exact tiling (``WindowScorer(exact=True)``, ``rensenet scan --exact``: each tile with
   the context the model was trained to see) on the test slices, at the same stride: seconds per slice of each
   window map, the difference of the window probabilities, and the CPM of each, with map peaks and with the
   weights' own (CAM-refined) settings.
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
from rensenet.models import optimize_for_inference
from rensenet.scanning.run import ScanSettings

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def paths(task: str, split: str) -> Tuple[List[str], Path]:
    return image_paths(select_split(read_manifest(DATA / task), split)), DATA / task


def fmt(ci: Dict[str, float]) -> str:
    return f"{ci['value']:.3f} [{ci['ci_low']:.3f}, {ci['ci_high']:.3f}]"


def sens(froc: dict) -> str:
    return " / ".join(f"{v['value']:.2f}" for v in froc["sens_at_fp"].values())


def stored_choice(ckpt: str) -> Optional[dict]:
    """The val choice zoo.json records for these very weights (same file name and sha256), or None."""
    from rensenet.models.zoo import sha256

    zoo = Path(__file__).resolve().parents[1] / "src" / "rensenet" / "weights" / "zoo.json"
    for entry in json.loads(zoo.read_text()) if zoo.exists() else []:
        if entry["file"] == Path(ckpt).name and entry["sha256"] == sha256(Path(ckpt)) and "scan_choice" in entry.get(
                "metrics", {}):
            return entry["metrics"]["scan_choice"]
    return None


def choose_and_report(ckpt: str, task: str) -> None:
    print(f"### {task}: scan settings chosen on val, reported on test\n")
    stored = stored_choice(ckpt)  # shipped weights: train_zoo.py made the choice; it is not made again
    best, rows = (stored["chosen"], stored["tried"]) if stored else choose_scan_settings(ckpt, DATA / task, split="val")
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


class TimedScorer(WindowScorer):
    """A scorer that keeps each slice's window map (keyed by path) and the seconds spent computing maps: every
    candidate rule at one stride reuses one map, and the speed-up compares the maps alone."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.maps: Dict[str, tuple] = {}
        self.seconds = 0.0
        self.key: Optional[str] = None

    def _score(self, image, extra_scale):
        if self.key not in self.maps:
            t = time.perf_counter()
            self.maps[self.key] = super()._score(image, extra_scale)
            self.seconds += time.perf_counter() - t
        return self.maps[self.key]


def dense_vs_tiled(ckpt: str, task: str, limits: Dict[int, Optional[int]]) -> None:
    """Dense maps against exact tiling (each tile with the context the model was trained with) at strides 8 and 4:
    seconds per slice of the window map, the difference of the window probabilities, and the CPM of map peaks and
    of the weights' own (CAM-refined) candidates on each map. ``limits`` caps the slices per stride (tiling at
    stride 4 is slow); the CPM is then that of those slices alone."""
    from rensenet.base.froc import cpm
    from rensenet.data.volumes import image_volume
    from rensenet.evaluation.scans import match_scans

    model, cfg = load_model(ckpt)
    fast = optimize_for_inference(copy.deepcopy(model))
    frame = select_split(read_manifest(DATA / task), "test")
    shipped = ScanSettings.for_weights(ckpt)
    print(f"### {task}: dense evaluation against exact tiling (test slices; tiles carry {cfg.context} px of "
          "context)\n")
    print("| stride | slices | dense map s/slice | tiled map s/slice | speed-up | mean abs prob diff | max | correlation "
          "| candidates | CPM dense | CPM tiled |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for stride in (8, 4):
        subset = frame.iloc[:limits.get(stride)].reset_index(drop=True)
        subset.attrs.update(frame.attrs)
        inputs = image_paths(subset)
        rules = [("map peaks", dict(refine="map"))]
        if stride == shipped.stride:
            rules.append((f"shipped: {shipped.refine}, {shipped.cam_peaks} peak(s)",
                          dict(refine=shipped.refine, cam_peaks=shipped.cam_peaks)))
        scorers = {name: TimedScorer(fast, cfg, stride=stride, device=resolve_device("cpu"), exact=exact)
                   for name, exact in (("dense", False), ("tiled", True))}
        scores: Dict[str, Dict[str, float]] = {}
        for label, how in rules:
            for name, scorer in scorers.items():
                cands = []
                for path in inputs:
                    scorer.key = path
                    _, _, peaks = scorer.candidates(image_volume(path).read(0)[None], **how)
                    cands += [{"path": path, "x": c.x, "y": c.y, "score": c.score} for c in peaks]
                scores.setdefault(label, {})[name] = cpm(match_scans(pd.DataFrame(cands), subset))
        d, t = scorers["dense"], scorers["tiled"]
        pairs = [(d.maps[p][0].probs, t.maps[p][0].probs) for p in inputs]
        diffs = np.concatenate([np.abs(a - b).ravel() for a, b in pairs])
        corr = np.mean([np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in pairs])
        sd, st = d.seconds / len(inputs), t.seconds / len(inputs)
        for i, (label, cpms) in enumerate(scores.items()):
            lead = (f"| {stride} | {len(inputs)} | {sd:.3f} | {st:.2f} | {st / sd:.0f}x | {diffs.mean():.4f} | "
                    f"{diffs.max():.3f} | {corr:.4f} ") if i == 0 else "| | | | | | | | "
            print(f"{lead}| {label} | {cpms['dense']:.3f} | {cpms['tiled']:.3f} |", flush=True)
    print("\n(Map seconds per slice: the window probabilities alone, in this process, on the slice with half a window "
          "and the model's context of black around it; candidates, heatmaps, reading and writing come on top. A CPM over fewer slices than the "
          "split counts only their lesions.)\n")


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
    for task in ("kidney", "lung"):
        ap.add_argument(f"--{task}-tiled", type=int, nargs=2, default=[0, 0], metavar=("STRIDE8", "STRIDE4"),
                        help=f"{task} test slices for the dense vs tiled comparison at strides 8 and 4 (0: all)")
    ap.add_argument("--parts", nargs="+", default=["choose", "dense", "volume"], choices=["choose", "dense", "volume"],
                    help="which tables to print (all by default)")
    a = ap.parse_args()
    print(f"# Whole-image detection ({date.today().isoformat()})\n")
    print(f"Machine: {machine_description(cpu=True)}, {torch.get_num_threads()} threads. Command: "
          f"`python benchmarks/whole_image.py {' '.join(sys.argv[1:])}`.\n")
    for task, ckpt, tiled in (("kidney-stone-scans", a.kidney, a.kidney_tiled), ("lung-nodule-scans", a.lung, a.lung_tiled)):
        if ckpt:
            cfg = json.dumps({k: v for k, v in load_model(ckpt)[1].to_dict().items() if k in (
                "model", "patch_size", "context", "epochs", "windows_per_image", "pos_fraction", "hard_negatives",
                "hard_fraction", "lr", "seed")})
            print(f"## {task}\n\nCheckpoint `{ckpt}`: {cfg}\n")
            if "choose" in a.parts:
                choose_and_report(ckpt, task)
            if "dense" in a.parts:
                dense_vs_tiled(ckpt, task, {8: tiled[0] or None, 4: tiled[1] or None})
    if a.kidney and "volume" in a.parts:
        volume_speed(a.kidney, a.volume_slices, 512)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count()))
    main()
