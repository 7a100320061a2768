"""The benchmark runner on a tiny configuration: records, the val sweep, resume without redoing, the report."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import yaml
from PIL import Image

import rensenet  # noqa: F401
from rensenet.benchmark import COST_FIELDS, RECORD_FIELDS, BenchmarkConfig, measure_cost, paired_test
from rensenet.cli.main import main as cli
from rensenet.data import read_manifest

from conftest import small_manifest


def test_measure_cost_counts_parameters_and_flops() -> None:
    model = timm.create_model("rensenet_s", num_classes=2, in_chans=1)
    cost = measure_cost(model, in_chans=1, img_size=64, steps=2)
    assert cost["params"] == sum(p.numel() for p in model.parameters())
    assert cost["gflops"] == pytest.approx(0.207, abs=0.005)  # benchmarks/model_cost.md
    assert cost["train_img_per_s"] > 0 and cost["infer_ms_batch1"] > 0 and cost["infer_img_per_s_batch64"] > 0


def test_config_errors_are_clear(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text("tasks: {a: {}}\nmodels: {x: {lr: 1}}\n")
    with pytest.raises(ValueError, match="model entry 'x' needs 'model:"):
        BenchmarkConfig.load(tmp_path / "b.yaml")
    assert BenchmarkConfig.load(Path(__file__).parents[1] / "benchmarks" / "full.yaml").seeds == [0, 1, 2]
    scans = Path(__file__).parents[1] / "benchmarks" / "scans.yaml"
    assert BenchmarkConfig.load(scans).cam_choices["lung-nodule-scans"]["task"] == "lung-nodule-ct"
    for bad in ({"kidney-stone-scans": "runs/cam_grid"}, {"no-such-task": {"results": "r.json", "task": "t"}}):
        (tmp_path / "s.yaml").write_text(yaml.safe_dump({**yaml.safe_load(scans.read_text()), "cam_choices": bad}))
        with pytest.raises(ValueError, match=r"cam_choices .* \{results: FILE, task: WINDOW_TASK\}"):
            BenchmarkConfig.load(tmp_path / "s.yaml")


def test_paired_test_over_seeds() -> None:
    recs = [{"task": "t", "model": m, "seed": s, "auc": a} for m, vals in
            (("a", [0.9, 0.92, 0.91]), ("b", [0.8, 0.83, 0.8])) for s, a in enumerate(vals)]
    out = paired_test(recs, "t", "a", "b")
    assert out["n_seeds"] == 3 and out["mean_difference"] == pytest.approx(0.1, abs=1e-9) and out["p_value"] < 0.01


def test_cost_measured_for_other_settings_is_not_reported(tmp_path: Path) -> None:
    # a 2x-input trial that wins after the cost was measured at 1x must not inherit the 1x GFLOPs
    from rensenet.benchmark import collect_records

    cfg = BenchmarkConfig(tasks={"t": {}}, models={"a": {"model": "densenet121"}}, seeds=[0], out=str(tmp_path))
    record = {"task": "t", "model": "a", "seed": 0, "num_classes": 2, "in_chans": 1, "img_size": 96,
              "timm_model": "densenet121", "train_options": {"lr": 0.01}}
    (tmp_path / "t" / "a" / "seed0").mkdir(parents=True)
    (tmp_path / "t" / "a" / "seed0" / "record.json").write_text(json.dumps(record))
    (tmp_path / "costs" / "t").mkdir(parents=True)
    cost = tmp_path / "costs" / "t" / "a.json"
    spec = {"num_classes": 2, "in_chans": 1, "img_size": 48, "model": "densenet121", "model_kwargs": {}}
    cost.write_text(json.dumps({"gflops": 0.25, "spec": spec}))
    assert "gflops" not in collect_records(cfg)[0]
    cost.write_text(json.dumps({"gflops": 0.99, "spec": {**spec, "img_size": 96}}))
    assert collect_records(cfg)[0]["gflops"] == 0.99 and "spec" not in collect_records(cfg)[0]


def test_grown_sweep_grid_warns_and_sweep_only_chooses_again(tmp_path: Path) -> None:
    import warnings

    from rensenet.benchmark import choose_settings, sweep_table, sweep_units

    cfg = BenchmarkConfig(tasks={"t": {"img_size": 48}}, models={"a": {"model": "densenet121"}}, out=str(tmp_path),
                          sweep={"lr": [0.003, 0.01]})
    root = tmp_path / "sweep" / "t" / "a"
    root.mkdir(parents=True)
    kept = {"options": {"lr": 0.01}, "run": None,
            "tried": [{"options": {"lr": 0.003}, "val_auc": 0.8}, {"options": {"lr": 0.01}, "val_auc": 0.9}]}
    (root / "chosen.json").write_text(json.dumps(kept))
    spec, opts = cfg.models["a"], {"img_size": 48}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the grid it was chosen from: no warning
        assert choose_settings(cfg, "t", "a", spec, opts) == kept
    assert "| a | lr=0.01 | lr=0.003: 0.800, lr=0.01: 0.900 |" in sweep_table(cfg, "t")
    cfg.sweep = {"lr": [0.003, 0.01, 0.03], "img_scale": [1, 2]}
    with pytest.warns(UserWarning, match=r"without lr=0.03, img_scale=2, which the config now sweeps"):
        assert choose_settings(cfg, "t", "a", spec, opts) == kept  # kept, not retrained behind the user's back
    # the report says so too, also for a unit whose seeds are all done (then choose_settings is not called)
    assert "| a | lr=0.01 | lr=0.003: 0.800, lr=0.01: 0.900; not tried: lr=0.03, img_scale=2 |" in sweep_table(cfg, "t")
    # --sweep-only then chooses again; here every point has a finished run (history + timing), so nothing trains
    cfg.sweep, cfg.epochs, cfg.seeds = {"lr": [0.003, 0.01, 0.03]}, 1, [0, 1]
    for lr, auc in ((0.003, 0.8), (0.01, 0.9), (0.03, 0.95)):
        (root / f"lr{lr}").mkdir()
        (root / f"lr{lr}" / "history.csv").write_text(f"epoch,val_auc\n1,{auc}\n")
        (root / f"lr{lr}" / "timing.json").write_text("{}")
    record = tmp_path / "t" / "a" / "seed0" / "record.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"train_options": {"img_size": 48, "lr": 0.01}}))
    assert sweep_units(cfg) == ["t / a / seed 0 (stale): trained with img_size=48 lr=0.01, now chosen lr=0.03"]
    assert json.loads((root / "chosen.json").read_text())["options"] == {"lr": 0.03}
    record.write_text(json.dumps({"train_options": {"img_size": 48, "lr": 0.03}}))
    assert sweep_units(cfg) == []  # seed 1 has no record yet: it will train at the new choice


def test_a_fresh_clone_keeps_the_published_results(tmp_path: Path, capsys) -> None:
    # a clone has results.json (committed) but no runs: it must report from it, not retrain or drop anything
    from rensenet.benchmark import choose_settings, collect_records

    sweep = {"chosen": {"lr": 0.01}, "tried": [{"options": {"lr": 0.003}, "val_auc": 0.71},
                                               {"options": {"lr": 0.01}, "val_auc": 0.74}]}
    published = [{"task": "t", "model": "a", "seed": s, "auc": 0.9 + s / 100, "train_options": {"lr": 0.01},
                  "img_size": 48, "num_classes": 2, "in_chans": 1, "timm_model": "resnet18", "cost_machine": "old CPU",
                  **{f: 0.5 for f in COST_FIELDS},
                  "run": f"elsewhere/seed{s}/run",
                  "sweep": sweep} for s in (0, 1, 2)]
    published.append({"task": "t", "model": "retired", "seed": 0, "auc": 0.5})  # no longer in the config
    results = tmp_path / "results.json"
    results.write_text(json.dumps(published))
    cfg = {"data_root": str(tmp_path / "no-data"), "out": str(tmp_path / "runs"), "results": str(results),
           "report": str(tmp_path / "RESULTS.md"), "seeds": [0, 1, 2], "epochs": 1, "sweep": {"lr": [0.003, 0.01]},
           "tasks": {"t": {"img_size": 48}}, "models": {"a": {"model": "resnet18"}}}
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(cfg))
    assert cli(["benchmark", "--config", str(tmp_path / "b.yaml")]) == 0  # no data here: it would fail if it trained
    assert json.loads(results.read_text()) == published and not (tmp_path / "runs").exists()
    report = (tmp_path / "RESULTS.md").read_text()
    assert "| a | 3 | 0.91 +- 0.01 |" in report
    assert "| a | lr=0.01 | lr=0.003: 0.710, lr=0.01: 0.740 |" in report  # the sweep travels with the records
    # a seed missing from the published results trains at the published choice, without sweeping again
    loaded = BenchmarkConfig.load(tmp_path / "b.yaml")
    assert choose_settings(loaded, "t", "a", loaded.models["a"], {"img_size": 48})["options"] == {"lr": 0.01}
    # the grid grows: the published points are reused (no data here to train them), lr=0.03 has a finished run and
    # wins; the seeds are named, then set aside
    run = tmp_path / "runs" / "sweep" / "t" / "a" / "lr0.03"
    run.mkdir(parents=True)
    (run / "history.csv").write_text("epoch,val_auc\n1,0.8\n")
    (run / "timing.json").write_text("{}")
    cfg["sweep"] = {"lr": [0.003, 0.01, 0.03]}
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(cfg))
    capsys.readouterr()
    assert cli(["benchmark", "--config", str(tmp_path / "b.yaml"), "--sweep-only"]) == 0
    assert "t / a / seed 2 (stale): trained with lr=0.01, now chosen lr=0.03" in capsys.readouterr().out
    assert json.loads(results.read_text()) == published  # named, not dropped
    assert cli(["benchmark", "--config", str(tmp_path / "b.yaml"), "--drop-stale"]) == 2  # only with --sweep-only
    assert cli(["benchmark", "--config", str(tmp_path / "b.yaml"), "--sweep-only", "--drop-stale"]) == 0
    assert json.loads(results.read_text()) == published[3:]  # the retired model's record stays
    aside = json.loads((tmp_path / "runs" / "superseded" / "t" / "a" / "seed1" / "record.json").read_text())
    assert aside["auc"] == 0.91 and "now chosen lr=0.03" in aside["superseded"]
    assert [r["model"] for r in collect_records(loaded)] == ["retired"]
    # the retrained seeds are costed as the set-aside ones were (same model and input), not on another machine
    retrained = {**published[0], "train_options": {"lr": 0.03}, "sweep": None}
    for f in COST_FIELDS + ("cost_machine",):
        retrained.pop(f)
    (tmp_path / "runs" / "t" / "a" / "seed0").mkdir(parents=True)
    (tmp_path / "runs" / "t" / "a" / "seed0" / "record.json").write_text(json.dumps(retrained))
    assert collect_records(loaded)[0]["gflops"] == 0.5 and collect_records(loaded)[0]["cost_machine"] == "old CPU"


TINY_MODELS = {"rensenet_s": {"model": "rensenet_s", "sweep": {"lr": [0.02]}},  # one value: used, not swept
               "resnet18": {"model": "resnet18", "sweep": {"lr": [0.01, 0.03]}}}


def _tiny_config(lung_small: Path, **changes) -> dict:
    """Relative paths, so a copy of the folder is a benchmark of its own."""
    return {"data_root": str(lung_small.parent), "out": "runs", "results": "results.json",
            "report": "report/RESULTS.md", "seeds": [0, 1], "epochs": 1, "n_boot": 20,
            "train": {"batch_size": 16}, "explain": {"faithfulness": False},
            "tasks": {lung_small.name: {"img_size": 48}}, "models": TINY_MODELS, **changes}


@pytest.fixture(scope="module")
def tiny_benchmark(lung_small: Path, tmp_path_factory) -> Path:
    """Two units, two seeds, run the way a GPU session runs them: both units at once, two runs of each at once,
    accuracy only; then the CPU cost in a second pass."""
    folder = tmp_path_factory.mktemp("bench")
    (folder / "b.yaml").write_text(yaml.safe_dump(_tiny_config(lung_small)))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        assert cli(["benchmark", "--config", "b.yaml", "--jobs", "2", "--parallel-runs", "2", "--no-cost",
                    "--no-report"]) == 0
        assert all("gflops" not in r for r in json.loads(Path("results.json").read_text()))
        assert cli(["benchmark", "--config", "b.yaml", "--costs-only"]) == 0
    return folder


@pytest.fixture()
def bench_copy(tiny_benchmark: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the finished tiny benchmark to change, as the working folder."""
    import shutil

    copy = tmp_path / "bench"
    shutil.copytree(tiny_benchmark, copy)
    monkeypatch.chdir(copy)
    return copy


def test_every_seed_is_recorded_with_its_sweep_choice_and_cost(bench_copy: Path, lung_small: Path) -> None:
    records = json.loads(Path("results.json").read_text())
    assert sorted((r["model"], r["seed"]) for r in records) == [("rensenet_s", 0), ("rensenet_s", 1),
                                                                ("resnet18", 0), ("resnet18", 1)]
    for r in records:
        missing = [f for f in RECORD_FIELDS if f not in r]
        assert not missing, missing
        assert 0 <= r["auc"] <= 1 and r["peak_train_mem_mb"] > 100 and r["img_size"] == 48
    chosen = json.loads(Path(f"runs/sweep/{lung_small.name}/resnet18/chosen.json").read_text())
    assert [t["options"]["lr"] for t in chosen["tried"]] == [0.01, 0.03]
    assert chosen["options"] == max(chosen["tried"], key=lambda t: t["val_auc"])["options"]  # the better val AUC
    assert all(r["train_options"]["lr"] == chosen["options"]["lr"] for r in records if r["model"] == "resnet18")
    assert all(r["train_options"]["lr"] == 0.02 for r in records if r["model"] == "rensenet_s")
    assert not Path(f"runs/sweep/{lung_small.name}/rensenet_s").exists()
    # each run got its settings as one JSON config, which `rensenet train --config` reads back
    run = Path(records[0]["run"])
    config = json.loads((run.parent / f"{run.name}.train_config.json").read_text())
    assert config["out"] == str(run) and config["batch_size"] == 16 and config["progress"] is False


def test_the_sweep_winner_is_the_seed_0_run_and_is_recorded_first(bench_copy: Path, lung_small: Path) -> None:
    records = json.loads(Path("results.json").read_text())
    chosen = json.loads(Path(f"runs/sweep/{lung_small.name}/resnet18/chosen.json").read_text())
    seed0 = next(r for r in records if r["model"] == "resnet18" and r["seed"] == 0)
    unit = Path("runs") / lung_small.name / "resnet18"
    assert seed0["run"] == chosen["run"] and not (unit / "seed0" / "run").exists()  # not trained twice
    assert (unit / "seed0" / "record.json").stat().st_mtime_ns < (unit / "seed1" / "run" / "config.json").stat().st_mtime_ns


def test_a_finished_benchmark_is_not_run_again(bench_copy: Path) -> None:
    ckpt = Path(json.loads(Path("results.json").read_text())[2]["run"]) / "best.pt"
    stamp = ckpt.stat().st_mtime_ns
    assert cli(["benchmark", "--config", "b.yaml"]) == 0
    assert ckpt.stat().st_mtime_ns == stamp and len(json.loads(Path("results.json").read_text())) == 4


def test_sweep_only_trains_the_new_grid_point_alone_and_names_stale_seeds(bench_copy: Path, lung_small: Path,
                                                                           capsys) -> None:
    root = Path(f"runs/sweep/{lung_small.name}/resnet18")
    before = json.loads((root / "chosen.json").read_text())
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("best.pt")}
    cfg = _tiny_config(lung_small)
    cfg["models"] = {**TINY_MODELS, "resnet18": {"model": "resnet18", "sweep": {"lr": [0.01, 0.03, 0.1]}}}
    Path("b.yaml").write_text(yaml.safe_dump(cfg))
    capsys.readouterr()
    assert cli(["benchmark", "--config", "b.yaml", "--models", "resnet18", "--sweep-only"]) == 0
    after = json.loads((root / "chosen.json").read_text())
    assert [t["options"]["lr"] for t in after["tried"]] == [0.01, 0.03, 0.1] and after["tried"][:2] == before["tried"]
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items()) and (root / "lr0.1" / "best.pt").exists()
    assert after["options"] == max(after["tried"], key=lambda t: t["val_auc"])["options"]
    trained_at = {r["seed"]: r["train_options"]["lr"] for r in json.loads(Path("results.json").read_text())
                  if r["model"] == "resnet18"}
    stale = sorted(seed for seed, lr in trained_at.items() if lr != after["options"]["lr"])
    out = capsys.readouterr().out
    assert [int(line.split("seed ")[1].split()[0]) for line in out.splitlines() if "resnet18 / seed" in line] == stale


def test_the_report_redraws_from_saved_panels_without_checkpoints(bench_copy: Path, lung_small: Path) -> None:
    report = Path("report/RESULTS.md").read_text()
    assert "paired t-test over 2 seeds" in report and "| rensenet_s | 2 |" in report
    assert "| resnet18 | lr=" in report  # the sweep table
    assert Path(f"report/auc_vs_gflops_{lung_small.name}.png").exists()
    figure = Path(f"report/heatmaps_{lung_small.name}.png")
    size = Image.open(figure).size  # a row per model
    panel = np.load(Path("runs") / lung_small.name / "resnet18" / "seed0" / "explain" / "lesions.npz")
    assert panel["cams"].shape == panel["images"].shape == panel["masks"].shape and len(panel["paths"]) == 8
    for ckpt in Path("runs").rglob("*.pt"):  # results copied from another machine carry no checkpoints
        ckpt.unlink()
    figure.unlink()
    Path("results.json").unlink()
    assert cli(["benchmark", "--config", "b.yaml", "--report-only"]) == 0
    assert Image.open(figure).size == size  # both models again
    assert len(json.loads(Path("results.json").read_text())) == 4  # the report's records, rewritten
    # a model with neither panel nor checkpoint (published by another clone) does not shrink the committed figure
    for saved in (Path("runs") / lung_small.name / "resnet18").rglob("lesions.npz"):
        saved.unlink()
    stamp = figure.stat().st_mtime_ns
    assert cli(["benchmark", "--config", "b.yaml", "--report-only"]) == 0
    assert figure.stat().st_mtime_ns == stamp and "heatmaps_" in Path("report/RESULTS.md").read_text()


def test_unknown_model_in_selection_is_named(tmp_path: Path) -> None:
    from rensenet.benchmark import units

    cfg = BenchmarkConfig(tasks={"t": {}}, models={"a": {"model": "rensenet_s"}})
    with pytest.raises(ValueError, match=r"\['b'\] not in the config's models"):
        units(cfg, only_models=["b"])
    assert units(cfg) == [("t", "a")]


def test_whole_image_benchmark_records_froc_and_cost_of_each_scan(tmp_path: Path, monkeypatch, capsys) -> None:
    """``kind: scans`` on 42 slices of the embedded kidney sample: the learning rate chosen on val CPM, each seed
    scored by a child ``rensenet scan`` (the record's CPM is the FROC of its candidates), the cost of scanning
    recorded, a finished benchmark not run again, and the report with every model's FROC curve."""
    from PIL import Image as PILImage

    from rensenet.benchmark import SCAN_RECORD_FIELDS
    from rensenet.benchmark.cost import gflops
    from rensenet.evaluation.scans import evaluate_scans

    sample = small_manifest(Path(rensenet.__file__).parent / "data" / "sample",
                            tmp_path / "data" / "kidney-stone-scans", task="kidney-stone-scans",
                            per_split={"train": 24, "val": 6, "test": 12}).parent
    config = {"kind": "scans", "data_root": str(sample), "out": "runs", "results": "scans.json",
              "report": "report/SCANS.md", "seeds": [0], "epochs": 1, "n_boot": 20,
              "train": {"batch_size": 16, "windows_per_image": 2, "hard_negatives": 1},
              "sweep": {"lr": [0.001, 0.01]}, "tasks": {"kidney-stone-scans": {"patch_size": 64, "context": 16}},
              "models": {"rensenet_s": {"model": "rensenet_s"},
                         "rensenet_s-no-ecm": {"model": "rensenet_s", "model_kwargs": {"ecm": False}, "sweep": {"lr": [0.01]}}},
              "cam_choices": {"kidney-stone-scans": {"results": "windows.json", "task": "kidney-stone-ct"}}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "windows.json").write_text(json.dumps([  # what --fair-heatmaps chose on the window task
        {"task": "kidney-stone-ct", "model": "rensenet_s-no-ecm", "seed": 0, "cam_method": "gradcam",
         "cam_target": ["stages.0.block", "stages.2.block"]},
        {"task": "lung-nodule-ct", "model": "rensenet_s", "seed": 0, "cam_method": "layercam", "cam_target": ["fusion"]}]))
    monkeypatch.chdir(tmp_path)
    assert cli(["benchmark", "--config", "s.yaml"]) == 0
    records = {r["model"]: r for r in json.loads(Path("scans.json").read_text())}
    assert sorted(records) == ["rensenet_s", "rensenet_s-no-ecm"]
    for name, r in records.items():
        assert set(SCAN_RECORD_FIELDS) <= set(r) and r["epochs"] == 1 and r["context"] == 16
        assert list(r["sens_at_fp"]) == ["0.125", "0.25", "0.5", "1", "2", "4", "8"]
        assert r["cpm"] == pytest.approx(np.mean(list(r["sens_at_fp"].values())))  # CPM: the mean of the 7
        scan = Path("runs") / "kidney-stone-scans" / name / "seed0" / "scan"
        again = evaluate_scans(scan / "candidates.csv", sample / "kidney-stone-scans", split="test", n_boot=20)
        assert r["cpm"] == pytest.approx(again["cpm"]["value"])
        window = gflops(timm.create_model("rensenet_s", num_classes=2, in_chans=1), torch.zeros(1, 1, 64, 64))
        assert r["gflops_per_slice"] > 10 * window and r["peak_mem_mb"] > 100 and r["seconds_per_slice"] > 0
    assert records["rensenet_s"]["cam_method"] is None and records["rensenet_s"]["cam_target"] is None
    assert records["rensenet_s-no-ecm"]["cam_method"] == "gradcam"
    assert records["rensenet_s-no-ecm"]["cam_target"] == ["stages.0.block", "stages.2.block"]
    scanned = Path("runs/kidney-stone-scans/rensenet_s-no-ecm/seed0/scan/report.md").read_text()
    assert "CAM-refined: gradcam on stages.0.block, stages.2.block" in scanned  # the scan placed them with it
    assert "CAM-refined)" in Path("runs/kidney-stone-scans/rensenet_s/seed0/scan/report.md").read_text()
    tried = records["rensenet_s"]["sweep"]["tried"]
    assert [t["options"]["lr"] for t in tried] == [0.001, 0.01]
    assert records["rensenet_s"]["lr"] == max(tried, key=lambda t: t["val_cpm"])["options"]["lr"]
    assert "sweep" not in records["rensenet_s-no-ecm"] and records["rensenet_s-no-ecm"]["lr"] == 0.01
    report = Path("report/SCANS.md").read_text()
    assert "### kidney-stone-scans" in report and "| rensenet_s | 1 |" in report and "val CPM" in report
    assert "rensenet_s-no-ecm: gradcam on stages.0.block + stages.2.block" in report
    assert PILImage.open("report/froc_kidney-stone-scans.png").size[0] > 300
    stamp = Path("scans.json").stat().st_mtime_ns, sorted(p.stat().st_mtime_ns for p in Path("runs").rglob("best.pt"))
    assert cli(["benchmark", "--config", "s.yaml", "--no-report"]) == 0  # finished: nothing trains or scans again
    assert sorted(p.stat().st_mtime_ns for p in Path("runs").rglob("best.pt")) == stamp[1]
    # --costs-only: the budget, from one timed training step and scan per unit, multiplied out by the recipe
    assert cli(["benchmark", "--config", "s.yaml", "--costs-only"]) == 0
    estimate = json.loads(Path("scans_estimate.json").read_text())
    n = {s: int((read_manifest(sample / "kidney-stone-scans")["split"] == s).sum()) for s in ("train", "val", "test")}
    for row, runs in zip(estimate["rows"], (2, 1)):  # rensenet_s: 2 sweep points; the other: 1 point
        assert row["runs"] == runs and row["window_s"] > 0 and row["scan_s"] > 0
        run_s = 1 * (n["train"] * 2 * row["window_s"] + n["val"] * row["scan_s"])  # no mining after the 1 epoch
        assert row["seconds_per_run"] == pytest.approx(run_s)
        assert row["seconds"] == pytest.approx(runs * run_s + n["test"] * row["scan_s"])
    assert "## Budget" in Path("report/SCANS.md").read_text()


def test_fair_heatmaps_choose_every_models_cam_on_val_and_score_each_seed_at_it(bench_copy: Path, lung_small: Path,
                                                                                capsys) -> None:
    """The same grid for every model, chosen on val by pointing game; seed 0 retrained where its checkpoint is
    gone; a seed without a checkpoint is named, not scored; seed 0's panel at the chosen CAM is kept beside the
    report for the chosen-CAM figure, and a clone without the search's files redraws it from the choice on record
    without searching again; running again changes nothing."""
    from rensenet.base import load_model
    from rensenet.explanation import explain_model
    from rensenet.explanation.grid import GRID_METHODS, layer_grid

    records = {(r["model"], r["seed"]): r for r in json.loads(Path("results.json").read_text())}
    (Path(records["resnet18", 0]["run"]) / "best.pt").unlink()  # seed 0 gone: retrained for the search
    (Path(records["rensenet_s", 1]["run"]) / "best.pt").unlink()  # another seed gone: not scored
    assert cli(["benchmark", "--config", "b.yaml", "--fair-heatmaps"]) == 0
    after = {(r["model"], r["seed"]): r for r in json.loads(Path("results.json").read_text())}
    for name in ("resnet18", "rensenet_s"):
        choice = json.loads((Path("runs") / "cam_grid" / lung_small.name / f"{name}.json").read_text())
        model, _ = load_model(choice["checkpoint"])
        assert [(r["method"], r["target_layers"]) for r in choice["rows"]] == \
            [(m, layers) for m in GRID_METHODS for layers in layer_grid(model)]
        best = max((r for r in choice["rows"] if "error" not in r), key=lambda r: (r["pointing_game"], r["energy_lift"]))
        assert (choice["method"], choice["target_layers"]) == (best["method"], best["target_layers"])
        for seed in (0, 1):
            r = after[name, seed]
            assert (r["cam_method"], r["cam_target"]) == (choice["method"], choice["target_layers"])
            assert r["pointing_game_default_cam"] == records[name, seed]["pointing_game"]
            assert r["auc"] == records[name, seed]["auc"]  # only the heatmap columns change
    assert after["resnet18", 0]["cam_checkpoint"] == "retrained here"
    assert Path(f"runs/{lung_small.name}/resnet18/seed0/cam_run/best.pt").exists()
    assert after["rensenet_s", 1]["pointing_game"] is None and after["rensenet_s", 1]["cam_checkpoint"] is None
    r = after["resnet18", 1]
    again = explain_model(Path(r["run"]) / "best.pt", lung_small, split="test", method=r["cam_method"],
                          target_layers=r["cam_target"], faithfulness=False, n_boot=20)
    assert r["cam_checkpoint"] == "original" and r["pointing_game"] == again.localization["pointing_game"]["value"]
    report = Path("report/RESULTS.md").read_text()
    assert "(2 of 2 seeds scored)" in report and "(1 of 2 seeds scored)" in report
    panel = np.load(Path("runs") / lung_small.name / "resnet18" / "seed1" / "explain_fair" / "lesions.npz")
    assert np.allclose(panel["cams"], again.lesion_cams[:8], atol=2e-3)  # the figure shows the chosen heatmaps
    chosen = Path("report/heatmaps_chosen") / lung_small.name
    for name in ("resnet18", "rensenet_s"):
        run0 = np.load(Path("runs") / lung_small.name / name / "seed0" / "explain_fair" / "lesions.npz")
        assert np.array_equal(np.load(chosen / f"{name}.npz")["cams"], run0["cams"])
    assert f"![Heatmaps at the CAM chosen on val](heatmaps_chosen_{lung_small.name}.png)" in report
    assert Image.open(f"report/heatmaps_chosen_{lung_small.name}.png").size[1] > 300  # CT row + 2 models
    # a clone: the search's files are gone (runs/ is not committed), and so is the panel
    (Path("runs") / "cam_grid" / lung_small.name / "resnet18.json").unlink()
    (chosen / "resnet18.npz").unlink()
    capsys.readouterr()
    assert cli(["benchmark", "--config", "b.yaml", "--fair-heatmaps", "--models", "resnet18"]) == 0
    assert "CAM grid on val" not in capsys.readouterr().out  # the choice on record is kept, not searched again
    kept = json.loads((Path("runs") / "cam_grid" / lung_small.name / "resnet18.json").read_text())
    assert (kept["method"], kept["target_layers"]) == (after["resnet18", 0]["cam_method"], after["resnet18", 0]["cam_target"])
    assert "searched_on" in kept and (chosen / "resnet18.npz").exists()
    stamp = Path("results.json").read_text()
    assert cli(["benchmark", "--config", "b.yaml", "--fair-heatmaps"]) == 0
    assert Path("results.json").read_text() == stamp
    # after a fix to a model's layer names: the choice on record is searched again, the default-CAM scores stay
    assert cli(["benchmark", "--config", "b.yaml", "--search-again"]) == 2  # only with --fair-heatmaps
    assert cli(["benchmark", "--config", "b.yaml", "--fair-heatmaps", "--models", "resnet18", "--search-again"]) == 0
    assert "CAM grid on val" in capsys.readouterr().out
    searched = json.loads((Path("runs") / "cam_grid" / lung_small.name / "resnet18.json").read_text())
    assert "searched_on" not in searched and [(r["method"], r["target_layers"]) for r in searched["rows"]] == \
        [(m, layers) for m in GRID_METHODS for layers in layer_grid(load_model(searched["checkpoint"])[0])]
    final = {(r["model"], r["seed"]): r for r in json.loads(Path("results.json").read_text())}
    for seed in (0, 1):
        assert (final["resnet18", seed]["cam_method"], final["resnet18", seed]["cam_target"]) == \
            (searched["method"], searched["target_layers"])
        assert final["resnet18", seed]["pointing_game_default_cam"] == records["resnet18", seed]["pointing_game"]
