"""Checkpoints are read without running code, old ones still load, and timm loads them as pretrained weights."""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import timm
import torch

import rensenet  # noqa: F401
from rensenet.base import CheckpointError, TrainConfig, load_checkpoint, load_model, save_checkpoint
from rensenet.cli.main import main as cli

from conftest import TESTS_DATA

LEGACY = TESTS_DATA / "legacy-v1-last.pt"


class _Payload:
    """Unpickling this object runs ``touch <file>`` (what a malicious checkpoint would do)."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return os.system, (f"touch {self.target}",)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")  # the plain-pickle case below
def test_a_checkpoint_that_would_run_code_is_refused_and_never_runs(tmp_path: Path, lung_small: Path,
                                                                    capsys) -> None:
    target = tmp_path / "pwned"
    legacy = torch.load(LEGACY, map_location="cpu", weights_only=True)
    torch.save({**legacy, "config": _Payload(target)}, tmp_path / "evil.pt")  # shaped like a real checkpoint
    with pytest.raises(CheckpointError, match=r"evil.pt: holds objects other than tensors and plain values "
                                              r"\((posix|nt).system\), so it was not loaded"):
        load_checkpoint(tmp_path / "evil.pt")
    assert cli(["evaluate", "--checkpoint", str(tmp_path / "evil.pt"), "--data", str(lung_small),
                "--out", str(tmp_path / "ev")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "it was not loaded" in err.replace("so it was", "it was")
    assert not target.exists()  # the payload never ran
    # the same payload in a plain pickle (a file that is not torch's zip format) is refused as well
    (tmp_path / "plain.pt").write_bytes(pickle.dumps({"format": "rensenet-checkpoint-v1", "config": _Payload(target)}))
    with pytest.raises(CheckpointError, match="plain.pt: "):
        load_checkpoint(tmp_path / "plain.pt")
    assert not target.exists()


def test_checkpoints_written_by_version_0_1_still_load() -> None:
    """tests/data/legacy-v1-last.pt was written by `rensenet train` at main 998a6d1, before the base layer."""
    expected = json.loads((TESTS_DATA / "legacy-v1-expected.json").read_text())
    model, cfg = load_model(LEGACY)
    assert isinstance(cfg, TrainConfig) and cfg.class_names == ["no_nodule", "nodule"] and cfg.img_size == 48
    assert cfg.native_size is None and cfg.scale == 1.0  # a field this version added: its default
    x = torch.linspace(-2, 2, 2 * 48 * 48).reshape(2, 1, 48, 48)
    with torch.no_grad():
        assert torch.allclose(model(x), torch.tensor(expected["logits"]), atol=1e-6)
    ckpt = load_checkpoint(LEGACY)
    assert ckpt["best_val_auc"] == pytest.approx(0.5078, abs=1e-4) and len(ckpt["history"]) == 1


def test_only_plain_values_are_saved(tmp_path: Path) -> None:
    import numpy as np

    model = timm.create_model("rensenet_s")
    with pytest.raises(TypeError, match=r"checkpoint\['score'\] is a float32"):
        save_checkpoint(tmp_path / "a.pt", model, TrainConfig(data="d"), score=np.float32(0.5))
    assert not (tmp_path / "a.pt").exists()
    save_checkpoint(tmp_path / "b.pt", model, TrainConfig(data="d", num_classes=2, class_names=["a", "b"]), score=0.5)
    assert torch.load(tmp_path / "b.pt", weights_only=True)["score"] == 0.5


def test_broken_and_foreign_files_are_named(tmp_path: Path) -> None:
    (tmp_path / "cut.pt").write_bytes(LEGACY.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="cut.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "cut.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="other.pt: not a rensenet checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    ckpt = load_checkpoint(LEGACY)
    torch.save({**ckpt, "config": {**ckpt["config"], "model_kwargs": {}}}, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="mismatch.pt: its weights do not fit the rensenet_s"):
        load_model(tmp_path / "mismatch.pt")


@pytest.mark.parametrize("name", timm.list_models("rensenet_*") + timm.list_models("ecm_*"))
def test_timm_loads_a_rensenet_checkpoint_as_pretrained_weights(name: str, tmp_path: Path) -> None:
    torch.manual_seed(1)
    trained = timm.create_model(name, num_classes=2, in_chans=1).eval()
    save_checkpoint(tmp_path / "best.pt", trained, TrainConfig(data="d", model=name, num_classes=2))
    x = torch.randn(2, 1, 64, 64)
    loaded = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(tmp_path / "best.pt")))
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), trained(x))
    # in_chans adapted the timm way (the 1-channel stem repeated and scaled), classifiers of a new size re-initialised
    three = timm.create_model(name, pretrained=True, in_chans=3, num_classes=5,
                              pretrained_cfg_overlay=dict(file=str(tmp_path / "best.pt"))).eval()
    stem = three.pretrained_cfg["first_conv"] + ".weight"
    w1, w3 = trained.state_dict()[stem], three.state_dict()[stem]
    assert w3.shape[1] == 3 and torch.allclose(w3, w1.repeat(1, 3, 1, 1) / 3, atol=1e-6)
    assert three(torch.randn(1, 3, 64, 64)).shape == (1, 5)
    kept = [k for k in trained.state_dict() if k.startswith(("stages.1", "body.layer2", "body.features_denseblock2"))]
    assert kept and all(torch.equal(trained.state_dict()[k], three.state_dict()[k]) for k in kept)
