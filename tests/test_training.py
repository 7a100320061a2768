"""Training on real CT: the model learns, runs resume exactly, DDP equals one process, the CLI works end to end."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
import torch

import rensenet  # noqa: F401
from rensenet.cli.main import main as cli
from conftest import small_manifest
from rensenet.data import read_manifest, select_split
from rensenet.base.datasets import make_dataset
from rensenet.models import RenseNetLoss
from rensenet.base import TrainConfig, load_checkpoint
from rensenet.training import train
from rensenet.training import images as images_module


def _window_tensors(root: Path, split: str, per_class: int):
    frame = select_split(read_manifest(root / "lung-nodule-ct"), split)
    frame = pd.concat([frame[frame.label == c].head(per_class) for c in (0, 1)]).reset_index(drop=True)
    frame.attrs["root"] = str(root / "lung-nodule-ct")
    ds = make_dataset(frame, TrainConfig(data="", img_size=48, mean=[0.26], std=[0.23], augment="none"))
    return torch.stack([ds[i]["image"] for i in range(len(ds))]), torch.tensor(frame["label"].to_numpy())


@pytest.mark.parametrize("seed", [0, 1])
def test_rensenet_learns_on_real_lung_nodules(data_root: Path, seed: int) -> None:
    """SGD on 256 real windows until held-out AUC reaches 0.70 (chance 0.5), checked every 40 steps: seen within
    40-160 steps on both the shared data and the embedded sample, over five seeds (capped at 800)."""
    from rensenet.base import auc_score

    torch.manual_seed(seed)
    images, labels = _window_tensors(data_root, "train", 128)
    val_x, val_y = _window_tensors(data_root, "val", 64)
    model = timm.create_model("rensenet_s", num_classes=2, in_chans=1)
    with torch.no_grad():
        untrained = auc_score(val_y.numpy(), torch.softmax(model.eval()(val_x), 1).numpy())
    assert untrained < 0.68  # seen 0.55-0.64: random features already sort by brightness a little
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    losses, auc = [], 0.0
    for step in range(1, 801):
        idx = torch.randint(0, len(images), (16,))
        loss = RenseNetLoss()(model.train().forward_heads(images[idx]), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % 40 == 0:
            with torch.no_grad():
                auc = auc_score(val_y.numpy(), torch.softmax(model.eval()(val_x), 1).numpy())
            if auc >= 0.70 and step >= 120:
                break
    assert auc >= 0.70, f"held-out AUC {auc:.3f} after {step} steps"
    assert np.mean(losses[-20:]) < np.mean(losses[:20])


def _config(data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(data=str(data), model="rensenet_s", out=str(out), epochs=2, batch_size=16, seed=3, progress=False)
    return TrainConfig(**{**base, **kw})


def test_train_writes_reproducible_outputs(lung_small: Path, tmp_path: Path) -> None:
    result = train(_config(lung_small, tmp_path / "run"))
    for name in ("config.json", "history.csv", "last.pt", "best.pt"):
        assert (tmp_path / "run" / name).is_file(), name
    assert not list((tmp_path / "run").glob(".*"))  # no temporary files left behind
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert list(history.epoch) == [1, 2] and history.val_auc.between(0, 1).all()
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["img_size"] == 48 and cfg["class_names"] == ["no_nodule", "nodule"] and cfg["num_classes"] == 2
    assert cfg["lr"] == 0.01 and cfg["optimizer"] == "sgd" and 0.1 < cfg["mean"][0] < 0.5
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best["epoch"] + 1 == result.best_epoch
    with pytest.raises(FileExistsError, match="pass --resume"):
        train(_config(lung_small, tmp_path / "run"))


def test_channels_last_training_matches_default(lung_small: Path, tmp_path: Path) -> None:
    """The speed option changes memory layout only: same losses and validation AUC up to float rounding."""
    plain = train(_config(lung_small, tmp_path / "plain", epochs=1))
    fast = train(_config(lung_small, tmp_path / "cl", epochs=1, channels_last=True))
    a, b = pd.read_csv(tmp_path / "plain" / "history.csv"), pd.read_csv(tmp_path / "cl" / "history.csv")
    assert a.train_loss[0] == pytest.approx(b.train_loss[0], rel=1e-3)  # rounding, amplified by SGD steps
    assert a.val_auc[0] == pytest.approx(b.val_auc[0], abs=0.02)
    assert plain.best_epoch == fast.best_epoch


def test_resume_continues_exactly(lung_small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kw = dict(epochs=3, augment="standard", model_kwargs={"drop_rate": 0.2})
    train(_config(lung_small, tmp_path / "straight", **kw))

    calls = {"n": 0}
    real = images_module.predict_probs

    def interrupted(*args, **kwargs):  # the run dies during epoch 3's validation
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(images_module, "predict_probs", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(_config(lung_small, tmp_path / "resumed", **kw))
    assert load_checkpoint(tmp_path / "resumed" / "last.pt")["epoch"] == 1
    monkeypatch.setattr(images_module, "predict_probs", real)
    with pytest.raises(ValueError, match=r"different settings \['lr'\]"):
        train(_config(lung_small, tmp_path / "resumed", resume=True, **{**kw, "lr": 0.1}))
    train(_config(lung_small, tmp_path / "resumed", resume=True, **kw))

    a = load_checkpoint(tmp_path / "straight" / "last.pt")
    b = load_checkpoint(tmp_path / "resumed" / "last.pt")
    for k, v in a["state_dict"].items():
        assert torch.allclose(v.float(), b["state_dict"][k].float(), atol=1e-5), k
    assert [round(h["train_loss"], 5) for h in a["history"]] == [round(h["train_loss"], 5) for h in b["history"]]


def test_early_stopping_after_patience(lung_small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images_module, "auc_score", lambda labels, probs: 0.5)  # validation never improves
    result = train(_config(lung_small, tmp_path / "es", epochs=5, early_stopping=1))
    assert [h["epoch"] for h in result.history] == [1, 2] and result.best_epoch == 1


def test_two_process_ddp_matches_single_process(lung_small: Path, tmp_path: Path) -> None:
    """torchrun with 2 CPU processes (gloo), batch 8 each, must reach the weights of 1 process with batch 16.

    GroupNorm (norm="group") makes each image's output independent of the batch split; the distributed sampler
    gives the union of the two ranks' batches the same images as the single process's batch.
    """
    args = ["train", "--data", str(lung_small), "--model", "rensenet_s", "--epochs", "1", "--batch-size", "16",
            "--augment", "none", "--seed", "5", "--no-progress", "--model-kwargs", '{"norm": "group"}']
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "rensenet", *args, "--out", str(tmp_path / "one")],
                            capture_output=True, text=True, env=env, timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
                          "-m", "rensenet", *args, "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert ddp.stdout.count("epoch 1/1") == 1  # only rank 0 reports
    a = load_checkpoint(tmp_path / "one" / "last.pt")["state_dict"]
    b = load_checkpoint(tmp_path / "two" / "last.pt")["state_dict"]
    changed = 0
    for k, v in a.items():
        assert torch.allclose(v, b[k], atol=2e-5), k
        changed += 1
    assert changed > 100


def test_cli_evaluate_and_predict(lung_small: Path, tmp_path: Path, capsys) -> None:
    assert cli(["train", "--data", str(lung_small), "--out", str(tmp_path / "run"), "--epochs", "1",
                "--batch-size", "16", "--no-progress"]) == 0
    ckpt = tmp_path / "run" / "best.pt"
    assert cli(["evaluate", "--checkpoint", str(ckpt), "--data", str(lung_small), "--split", "test",
                "--out", str(tmp_path / "ev"), "--n-boot", "50"]) == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    for k in ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "precision", "f1", "auc", "pr_auc"):
        assert metrics[k]["ci_low"] <= metrics[k]["value"] <= metrics[k]["ci_high"], k
    assert metrics["n"] == 32 and len(metrics["sensitivity_by_lesion_size"]) == 3
    preds = pd.read_csv(tmp_path / "ev" / "predictions.csv")
    assert len(preds) == 32 and np.allclose(preds.prob_no_nodule + preds.prob_nodule, 1, atol=1e-5)
    assert (tmp_path / "ev" / "roc_curve.png").stat().st_size > 1000
    assert (tmp_path / "ev" / "confusion_matrix.png").stat().st_size > 1000

    # predict on PNG files, a DICOM file and a NIfTI volume
    import pydicom.data
    import nibabel as nib
    vol = np.random.default_rng(0).normal(-500, 300, (40, 30, 3)).astype(np.float32)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "vol.nii.gz")
    pngs = [Path(p) for p in preds.path[:2]]
    assert cli(["predict", "--checkpoint", str(ckpt), *map(str, pngs), pydicom.data.get_testdata_file("CT_small.dcm"),
                str(tmp_path / "vol.nii.gz"), "--window", "lung", "--out", str(tmp_path / "p.csv")]) == 0
    table = pd.read_csv(tmp_path / "p.csv")
    assert len(table) == 2 + 1 + 3 and list(table.slice.dropna()) == [0, 1, 2]
    # the same PNG gives the same probability as evaluate
    assert np.allclose(table.prob_nodule[:2], preds.prob_nodule[:2], atol=1e-5)


def test_cli_errors_are_clear(lung_small: Path, tmp_path: Path, capsys) -> None:
    assert cli(["evaluate", "--checkpoint", str(tmp_path / "none.pt"), "--data", str(lung_small),
                "--out", str(tmp_path / "e")]) == 2
    assert "none.pt: checkpoint not found" in capsys.readouterr().err
    assert cli(["train", "--data", str(lung_small), "--out", str(tmp_path / "r"), "--val-split", "holdout"]) == 2
    assert "no split 'holdout'" in capsys.readouterr().err
    assert cli(["train", "--data", str(lung_small), "--out", str(tmp_path / "r"), "--model", "resnet9000"]) == 2
    assert "unknown model 'resnet9000'" in capsys.readouterr().err


def test_timm_baseline_trains_with_plain_cross_entropy(lung_small: Path, tmp_path: Path) -> None:
    result = train(_config(lung_small, tmp_path / "r18", model="resnet18", epochs=1))
    assert np.isfinite(result.history[0]["train_loss"])
    assert load_checkpoint(tmp_path / "r18" / "best.pt")["config"]["model"] == "resnet18"


def _manifest_copy(src: Path, dest: Path, edit) -> Path:
    df = pd.read_csv(src / "manifest.csv", keep_default_na=False)
    df = edit(df)
    dest.mkdir(parents=True, exist_ok=True)
    df.to_csv(dest / "manifest.csv", index=False)
    return dest


def test_a_label_that_leaves_classes_empty_is_refused_unless_named(lung_small: Path, tmp_path: Path,
                                                                   capsys) -> None:
    def relabel(df):
        df.loc[5, "label"] = 7  # one row of a two-class task labelled 7: classes 2-6 would have no image
        return df

    data = _manifest_copy(lung_small, tmp_path / "d", relabel)
    assert cli(["train", "--data", str(data), "--out", str(tmp_path / "r"), "--epochs", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "no image has label 2, 3, 4, 5, 6" in err and "1 row(s) have a label above 2 (line 7)" in err
    assert not (tmp_path / "r").exists()
    names = ["no_nodule", "nodule", "c2", "c3", "c4", "c5", "c6", "seven"]
    result = train(_config(data, tmp_path / "named", epochs=1, class_names=names))
    ckpt = load_checkpoint(tmp_path / "named" / "best.pt")
    assert ckpt["config"]["num_classes"] == 8 and ckpt["config"]["class_names"] == names
    assert result.selection == "val_accuracy"  # val has only two of the eight classes: AUC is undefined there


def test_a_one_class_validation_split_selects_by_accuracy_and_says_so(lung_small: Path, tmp_path: Path,
                                                                      capsys) -> None:
    data = _manifest_copy(lung_small, tmp_path / "d", lambda df: df[(df.split != "val") | (df.label == 1)])
    result = train(_config(data, tmp_path / "r", epochs=2))
    out = capsys.readouterr().out
    assert "the 'val' split has no image of class(es) ['no_nodule']: AUC is undefined there, so best.pt is " \
           "selected by val accuracy" in out.splitlines()[0]
    history = pd.read_csv(tmp_path / "r" / "history.csv")
    assert history.val_auc.isna().all()
    assert result.selection == "val_accuracy" and result.best_score == history.val_accuracy.max()
    assert f"done: best val accuracy {result.best_score:.4f} at epoch {result.best_epoch}" in out
    assert load_checkpoint(tmp_path / "r" / "best.pt")["selection"] == "val_accuracy"


@pytest.mark.parametrize("warmup_epochs", [0.0, 0.5])
def test_learning_rate_curve_is_the_one_before_timm(warmup_epochs: float) -> None:
    """The schedule of v0.1 (a LambdaLR, per step): linear warm-up to lr at step W-1, then a cosine from lr at
    step W to 0. timm's scheduler gives the same cosine at every step; its warm-up starts at the same lr / W and is
    linear too, but reaches lr one step later (at W), so during warm-up it is lower by less than lr / W."""
    import math

    from rensenet.training.optim import make_optimizer, make_scheduler

    cfg = TrainConfig(data="d", epochs=4, warmup_epochs=warmup_epochs, lr=0.02)
    model = timm.create_model("rensenet_s")
    optimizer = make_optimizer(cfg, model)
    steps_per_epoch = 25
    scheduler = make_scheduler(cfg, optimizer, steps_per_epoch)
    total, warmup = cfg.epochs * steps_per_epoch, int(warmup_epochs * steps_per_epoch)

    def before(step: int) -> float:  # v0.1's rensenet.training.trainer._lr_lambda
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min((step - warmup) / max(total - warmup, 1), 1.0)))

    lrs = []
    for step in range(total):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step_update(step + 1)
    for step, lr in enumerate(lrs):
        if step >= warmup:
            assert lr == pytest.approx(cfg.lr * before(step), abs=1e-12), step
        else:
            assert cfg.lr * before(step) - cfg.lr / warmup <= lr <= cfg.lr * before(step) + 1e-12
    assert lrs[0] == pytest.approx(cfg.lr / max(warmup, 1) if warmup else cfg.lr)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.0, 1e-4]  # no decay on norms and biases
    assert all(p.ndim <= 1 for p in optimizer.param_groups[0]["params"])
    assert optimizer.param_groups[0]["momentum"] == 0.9 and not optimizer.param_groups[0]["nesterov"]


def test_an_interrupted_run_of_version_0_1_resumes(tmp_path: Path) -> None:
    """last.pt of v0.1 kept its optimizer's groups in the other order and a LambdaLR state; it still resumes."""
    from conftest import TESTS_DATA

    ckpt = load_checkpoint(TESTS_DATA / "legacy-v1-last.pt")
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes((TESTS_DATA / "legacy-v1-last.pt").read_bytes())
    from rensenet.demo import sample_data_dir

    data = small_manifest(sample_data_dir().parent, tmp_path / "d", per_split={"train": 32, "val": 16})
    cfg = TrainConfig.from_dict({**ckpt["config"], "data": str(data), "out": str(run), "epochs": 2, "resume": True})
    result = train(cfg)
    assert [h["epoch"] for h in result.history] == [1, 2]
