"""Train, evaluate and explain with the default recipe on the benchmark tasks; writes a Markdown table.

    python benchmarks/run_defaults.py --data-root ../shared/data --out runs/defaults \
        --tasks lung-nodule-ct kidney-stone-ct --models rensenet_s --epochs 12 --seed 0

Every step is the `rensenet` command printed in the table; runs already finished are not redone.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path


def run(cmd: list, log: Path) -> float:
    print("$", " ".join(shlex.quote(c) for c in cmd), flush=True)
    t = time.time()
    with open(log, "a") as f:
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT)
    return time.time() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--out", default="runs/defaults")
    p.add_argument("--tasks", nargs="+", default=["lung-nodule-ct", "kidney-stone-ct"])
    p.add_argument("--models", nargs="+", default=["rensenet_s"])
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--explain-args", default="", help="extra arguments for rensenet explain")
    p.add_argument("--results", default="benchmarks/results_defaults.json")
    a = p.parse_args()
    results = json.loads(Path(a.results).read_text()) if Path(a.results).exists() else []
    done = {(r["task"], r["model"], r["seed"], r["epochs"]) for r in results}
    rn = [sys.executable, "-m", "rensenet"]
    for task in a.tasks:
        for model in a.models:
            if (task, model, a.seed, a.epochs) in done:
                continue
            data, out = f"{a.data_root}/{task}", Path(a.out) / task / f"{model}-seed{a.seed}"
            out.mkdir(parents=True, exist_ok=True)
            log = out / "log.txt"
            train = ["train", "--data", data, "--model", model, "--out", str(out / "run"), "--epochs", str(a.epochs),
                     "--seed", str(a.seed), "--no-progress"]
            resume = ["--resume"] if (out / "run" / "last.pt").exists() else []
            seconds = run(rn + train + resume, log)
            evaluate = ["evaluate", "--checkpoint", str(out / "run" / "best.pt"), "--data", data, "--split", "test",
                        "--out", str(out / "eval")]
            run(rn + evaluate, log)
            explain = ["explain", "--checkpoint", str(out / "run" / "best.pt"), "--data", data, "--split", "test",
                       "--out", str(out / "explain"), *shlex.split(a.explain_args)]
            run(rn + explain, log)
            keep = Path("benchmarks/defaults") / task / model  # the committed copies of the raw results
            keep.mkdir(parents=True, exist_ok=True)
            for src in (out / "eval" / "metrics.json", out / "explain" / "localization.json", out / "run" / "history.csv"):
                shutil.copyfile(src, keep / src.name)
            m = json.loads((out / "eval" / "metrics.json").read_text())
            loc = json.loads((out / "explain" / "localization.json").read_text())
            small = [r for r in m.get("sensitivity_by_lesion_size", []) if r["tercile"] == "small"]
            results.append({
                "task": task, "model": model, "seed": a.seed, "epochs": a.epochs, "train_seconds": round(seconds),
                "test_auc": m["auc"], "test_accuracy": m["accuracy"]["value"], "test_sensitivity": m["sensitivity"]["value"],
                "test_specificity": m["specificity"]["value"], "test_f1": m["f1"]["value"],
                "small_lesion_sensitivity": small[0]["sensitivity"] if small else None,
                "pointing_game": loc["pointing_game"], "energy_lift": loc["energy_lift"],
                "chance_pointing_game": loc["chance"]["pointing_game"], "road_combined": loc.get("road_combined"),
                "cam": f"{loc['method']} on {', '.join(loc['target_layers'])}",
                "commands": ["rensenet " + " ".join(shlex.quote(c) for c in cmd) for cmd in (train, evaluate, explain)],
                "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {__import__('torch').__version__}",
                "date": date.today().isoformat(),
            })
            Path(a.results).write_text(json.dumps(results, indent=2) + "\n")
    print("| task | model | epochs | train s | test AUC [95% CI] | acc | sens | spec | small-lesion sens | pointing game (chance) | energy lift | CAM |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['task']} | {r['model']} | {r['epochs']} | {r['train_seconds']} | {r['test_auc']['value']:.3f} "
              f"[{r['test_auc']['ci_low']:.3f}, {r['test_auc']['ci_high']:.3f}] | {r['test_accuracy']:.3f} | "
              f"{r['test_sensitivity']:.3f} | {r['test_specificity']:.3f} | "
              f"{r['small_lesion_sensitivity'] if r['small_lesion_sensitivity'] is None else round(r['small_lesion_sensitivity'], 3)} | "
              f"{r['pointing_game']['value']:.3f} ({r['chance_pointing_game']:.3f}) | {r['energy_lift']['value']:.2f} | {r['cam']} |")


if __name__ == "__main__":
    main()
