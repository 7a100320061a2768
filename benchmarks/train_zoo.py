"""Train, score and package the weights shipped in the package: one command makes every weight file.

    python benchmarks/train_zoo.py --tags all                    # train what has no finished run, then package
    python benchmarks/train_zoo.py --tags kidney_stone_scan --package-only

For each tag: ``rensenet train`` with the recipe below (seed 0, ``OMP_NUM_THREADS=--threads``) into
``runs/zoo/<tag>/run`` (a finished run with the same settings is reused; training is deterministic from its seed
on a given machine and thread count). Then the float16 weight file goes to ``src/rensenet/weights`` (its logits
checked against float32 on real test images), is scored on test with the package's own commands, and its sha256,
metrics and command are recorded in ``weights/zoo.json``, with its card in ``docs/models/<name>.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any, Dict

import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
WEIGHTS = REPO / "src" / "rensenet" / "weights"
CARDS = REPO / "docs" / "models"
LIDC = "LIDC-IDRI (The Cancer Imaging Archive), CC BY 3.0"
TEZ = "TEZ_ROI_AUG (Yildirim et al. 2021, Roboflow export), CC BY 4.0"

RECIPES: Dict[str, Dict[str, Any]] = {
    "lidc_nodule_window": dict(task="lung-nodule-ct", train={"epochs": 12}, window="lung", source=LIDC,
                               description="Is there a lung nodule in this 48 x 48 axial CT window (lung window)?"),
    "kidney_stone_window": dict(task="kidney-stone-ct", train={"epochs": 12}, window=None, source=TEZ,
                                description="Is there a kidney stone in this 64 x 64 coronal CT window?"),
    "kidney_stone_scan": dict(task="kidney-stone-scans", windows_task="kidney-stone-ct", window=None, source=TEZ,
                              train={"patch_size": 64, "context": 32, "epochs": 16, "hard_negatives": 4},
                              description="Kidney-stone detector for whole coronal CT slices (rensenet scan)."),
    "lidc_nodule_scan": dict(task="lung-nodule-scans", windows_task="lung-nodule-ct", window="lung", source=LIDC,
                             train={"patch_size": 48, "context": 32, "epochs": 16, "hard_negatives": 4},
                             description="Lung-nodule detector for whole axial CT views, lung window (rensenet scan)."),
}
ARCH = "rensenet_s"


def command(tag: str) -> list:
    r = RECIPES[tag]
    args = ["train", "--data", f"../shared/data/{r['task']}", "--model", ARCH, "--out", f"runs/zoo/{tag}/run",
            "--seed", "0", "--no-progress"]
    for k, v in r["train"].items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    return args


def finished(tag: str) -> bool:
    run = REPO / "runs" / "zoo" / tag / "run"
    if not (run / "best.pt").exists() or not (run / "history.csv").exists():
        return False
    cfg = json.loads((run / "config.json").read_text())
    want = {"model": ARCH, "seed": 0, **RECIPES[tag]["train"]}
    import pandas as pd

    return all(cfg.get(k) == v for k, v in want.items()) and len(pd.read_csv(run / "history.csv")) >= cfg["epochs"]


def train(tag: str, threads: int) -> None:
    if finished(tag):
        print(f"[{tag}] finished run reused")
        return
    resume = ["--resume"] if (REPO / "runs" / "zoo" / tag / "run" / "last.pt").exists() else []
    cmd = [sys.executable, "-m", "rensenet", *command(tag), *resume]
    print("$", " ".join(shlex.quote(c) for c in cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": str(threads)})


def package(tag: str, threads: int) -> Dict[str, Any]:
    from rensenet.base import load_checkpoint, load_model
    from rensenet.base.checkpoint import FORMAT, checkpoint_config
    from rensenet.base.io import save_torch
    from rensenet.benchmark.processes import machine_description
    from rensenet.models.zoo import sha256

    recipe, run = RECIPES[tag], REPO / "runs" / "zoo" / tag / "run"
    ckpt = load_checkpoint(run / "best.pt")
    cfg = checkpoint_config(ckpt, run / "best.pt")
    cfg.window, cfg.data, cfg.out = recipe["window"], f"../shared/data/{recipe['task']}", f"runs/zoo/{tag}/run"
    name = f"{ARCH}.{tag}"
    path = WEIGHTS / f"{name}.pt"
    full, _ = load_model(run / "best.pt")
    x = _test_images(recipe.get("windows_task", recipe["task"]), cfg)
    diffs = {}
    for dtype in (torch.float16, torch.float32):  # float16 where its logits stay within 1e-3 of float32
        weights = {k: v.to(dtype) if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
        file = {"format": FORMAT, "config": cfg.to_dict(), "state_dict": weights, "epoch": ckpt["epoch"],
                "zoo": {"tag": name, "command": "rensenet " + " ".join(command(tag))}}
        save_torch(path, file)
        stored, _ = load_model(path)
        with torch.no_grad():
            diffs[dtype] = diff = float((full(x) - stored(x)).abs().max())
        if diff < 1e-3:
            break
    choice = None
    if "windows_task" in recipe:  # a detector: its scan settings, chosen on val, travel with it
        from rensenet.benchmark.scans import choose_scan_settings

        best, rows = choose_scan_settings(path, DATA / recipe["task"], split="val")
        save_torch(path, {**file, "scan": best})
        choice = {"chosen": best, "tried": rows}
    metrics = score(tag, path)
    if choice:
        metrics["scan_choice"] = choice
    size = int(cfg.img_size)
    return {"tag": tag, "architecture": ARCH, "file": path.name, "sha256": sha256(path),
            "bytes": path.stat().st_size, "num_classes": cfg.num_classes, "input_size": [cfg.in_chans, size, size],
            "pool_size": [size // 16, size // 16], "mean": cfg.mean, "std": cfg.std, "label_names": cfg.class_names,
            "window": cfg.window, "scale": cfg.scale, "description": recipe["description"],
            "license": recipe["source"], "card": f"docs/models/{name}.md",
            "command": f"OMP_NUM_THREADS={threads} rensenet " + " ".join(command(tag)),
            "storage": str(dtype).replace("torch.", ""), "max_logit_diff_to_float32": diff,
            "float16_max_logit_diff": diffs[torch.float16],
            "epoch": int(ckpt["epoch"]) + 1, "trained_on": machine_description(cpu=True),
            "date": date.today().isoformat(), "metrics": metrics}


def _test_images(task: str, cfg) -> torch.Tensor:
    """The first 64 test windows of a window task, as the model sees them."""
    from rensenet.base.datasets import make_dataset
    from rensenet.data import read_manifest, select_split

    frame = select_split(read_manifest(DATA / task), "test")
    head = frame.head(64)
    head.attrs.update(frame.attrs)
    ds = make_dataset(head, cfg)
    return torch.stack([ds[i]["image"] for i in range(len(ds))])


def score(tag: str, path: Path) -> Dict[str, Any]:
    """Test metrics with the package's commands: windows AUC (evaluate) and heatmaps (explain) on the window task;
    for a scan detector also the FROC of ``rensenet scan`` on the whole test images."""
    from rensenet.benchmark.scans import scan_split
    from rensenet.evaluation.report import evaluate
    from rensenet.explanation import explain_model

    recipe = RECIPES[tag]
    windows_task = recipe.get("windows_task", recipe["task"])
    m = evaluate(path, DATA / windows_task, split="test", n_boot=1000)
    loc = explain_model(path, DATA / windows_task, split="test", faithfulness=False, n_boot=1000).localization
    out: Dict[str, Any] = {
        "windows": {"task": windows_task, **{k: m[k] for k in ("auc", "sensitivity", "specificity")},
                    "n": m["n"], "n_patients": m["n_patients"]},
        "heatmaps": {"task": windows_task, "pointing_game": loc["pointing_game"], "energy_lift": loc["energy_lift"],
                     "chance_pointing_game": loc["chance"]["pointing_game"], "method": loc["method"],
                     "target_layers": loc["target_layers"]}}
    if "windows_task" in recipe:
        froc, seconds = scan_split(path, DATA / recipe["task"], "test", {}, n_boot=1000)  # its own settings
        out["scans"] = {"task": recipe["task"], "cpm": froc["cpm"], "sens_at_fp": froc["sens_at_fp"],
                        "n_images": froc["n_images"], "n_lesions": froc["n_lesions"],
                        "by_lesion_size": froc["by_lesion_size"], "seconds_per_slice": seconds}
    return out


def main() -> None:
    from card import write_card

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tags", nargs="+", default=["all"], help=f"some of {sorted(RECIPES)}, or all")
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the training runs")
    ap.add_argument("--package-only", action="store_true", help="package finished runs, train nothing")
    a = ap.parse_args()
    tags = sorted(RECIPES) if a.tags == ["all"] else a.tags
    zoo_path = WEIGHTS / "zoo.json"
    for tag in tags:
        if not a.package_only:
            train(tag, a.threads)
        entry = package(tag, a.threads)
        # read just before writing: another tag may be packaged by a second process at the same time
        zoo = {e["tag"]: e for e in (json.loads(zoo_path.read_text()) if zoo_path.exists() else [])}
        zoo[tag] = entry
        zoo_path.write_text(json.dumps([zoo[t] for t in sorted(zoo)], indent=1) + "\n")
        write_card(CARDS / f"{ARCH}.{tag}.md", entry, RECIPES[tag])
        print(f"[{tag}] {entry['file']} {entry['bytes'] / 1e6:.2f} MB, sha256 {entry['sha256'][:12]}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
