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
from rensenet.data import read_manifest, select_split
from rensenet.base.datasets import make_dataset
from rensenet.models import RenseNetLoss
from rensenet.base import TrainConfig, load_checkpoint
from rensenet.training import train
from rensenet.training import images as images_module


def test_rensenet_learns_on_real_lung_nodules(shared_data: Path) -> None:
    """A few hundred steps on 256 real windows must clearly lower the three-head training loss."""
    torch.manual_seed(0)
    frame = select_split(read_manifest(shared_data / "lung-nodule-ct"), "train")
    frame = pd.concat([frame[frame.label == c].head(128) for c in (0, 1)]).reset_index(drop=True)
    frame.attrs["root"] = str(shared_data / "lung-nodule-ct")
    ds = make_dataset(frame, TrainConfig(data="", img_size=48, mean=[0.26], std=[0.23], augment="none"), train=True)
    images = torch.stack([ds[i]["image"] for i in range(len(ds))])
    labels = torch.tensor(frame["label"].to_numpy())
    model = timm.create_model("rensenet_s", num_classes=2, in_chans=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    loss_fn, losses = RenseNetLoss(), []
    for step in range(240):
        idx = torch.randint(0, len(images), (16,))
        loss = loss_fn(model.forward_heads(images[idx]), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = np.mean(losses[:30]), np.mean(losses[-30:])
    assert first > 0.9  # about 1.6 * ln 2 at the start
    assert last < 0.75 * first, (first, last)  # seen: 1.08 -> 0.67


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
    pydicom = pytest.importorskip("pydicom")
    nib = pytest.importorskip("nibabel")
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
