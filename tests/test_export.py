"""Export: ONNX and TorchScript files that a runtime without rensenet reads back with the same logits and the
same whole-image map, carrying the normalisation and class names."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from rensenet.base import TrainConfig, load_model, save_checkpoint, weights_file
from rensenet.base.windows import WindowScorer
from rensenet.cli.main import main as cli
from rensenet.data.volumes import image_volume
from rensenet.demo import sample_data_dir
from rensenet.models.dense import dense_window_logits

TAG = "rensenet_s.kidney_stone_scan"


def _slices(n: int = 2) -> list:
    folder = sample_data_dir("kidney-stone-scans") / "images"
    return [image_volume(p).read(0) for p in sorted(folder.glob("*.jpg"))[:n]]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("export")
    for name, extra in (("model.onnx", []), ("dense.onnx", ["--dense"]), ("model.pt", ["--format", "torchscript"])):
        assert cli(["export", "--model", TAG, "--out", str(out / name), *extra]) == 0
    return {"dir": out, "model": load_model(weights_file(tag=TAG))}


def test_onnx_logits_match_pytorch_on_real_slices_at_two_sizes(exported: dict) -> None:
    model, cfg = exported["model"]
    session = ort.InferenceSession(str(exported["dir"] / "model.onnx"))
    scorer = WindowScorer(model, cfg, margin=0)
    for image in _slices():
        x = scorer.prepare(image[None])[0]
        for crop in (x[..., 100:164, 150:214], x[..., 40:136, 40:136]):  # 64 px, the training size, and 96 px
            with torch.no_grad():
                ref = model(crop).numpy()
            got = session.run(None, {"image": crop.numpy()})[0]
            assert np.abs(got - ref).max() < 1e-4
    meta = {p.key: p.value for p in onnx.load(str(exported["dir"] / "model.onnx")).metadata_props}
    assert json.loads(meta["class_names"]) == cfg.class_names and json.loads(meta["mean"]) == cfg.mean
    assert meta["opset"] == "17" and meta["kind"] == "classifier"


def test_the_dense_onnx_graph_gives_the_whole_image_map(exported: dict) -> None:
    model, cfg = exported["model"]
    session = ort.InferenceSession(str(exported["dir"] / "dense.onnx"))
    x = WindowScorer(model, cfg, margin=0).prepare(_slices(1)[0][None])[0]
    with torch.no_grad():
        ref = dense_window_logits(model, x, window=64, stride=16).numpy()
    got = session.run(None, {"image": x.numpy()})[0][:, :, :ref.shape[2], :ref.shape[3]]  # windows inside the image
    assert got.shape == ref.shape == (1, 2, (320 - 64) // 16 + 1, (391 - 64) // 16 + 1)
    assert np.abs(got - ref).max() < 1e-4


def test_torchscript_export_matches(exported: dict) -> None:
    model, cfg = exported["model"]
    extra = {"rensenet.json": ""}
    scripted = torch.jit.load(str(exported["dir"] / "model.pt"), _extra_files=extra)
    x = torch.randn(2, 1, 80, 72)
    with torch.no_grad():
        assert torch.allclose(scripted(x), model(x), atol=1e-4)
    assert json.loads(json.loads(extra["rensenet.json"])["class_names"]) == cfg.class_names  # values as in ONNX


def test_a_baseline_exports_existing_files_are_kept_and_failures_leave_nothing(tmp_path: Path, capsys,
                                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import timm

    baseline = timm.create_model("resnet18", num_classes=2, in_chans=1).eval()
    save_checkpoint(tmp_path / "r18.pt", baseline, TrainConfig(data="d", model="resnet18", num_classes=2,
                                                               class_names=["a", "b"], img_size=64, mean=[0.5],
                                                               std=[0.25]))
    assert cli(["export", "--checkpoint", str(tmp_path / "r18.pt"), "--out", str(tmp_path / "r18.onnx")]) == 0
    x = np.random.default_rng(0).random((1, 1, 64, 64), dtype=np.float32)
    got = ort.InferenceSession(str(tmp_path / "r18.onnx")).run(None, {"image": x})[0]
    with torch.no_grad():
        assert np.abs(got - baseline(torch.from_numpy(x)).numpy()).max() < 1e-4
    stamp = (tmp_path / "r18.onnx").stat().st_mtime_ns
    assert cli(["export", "--checkpoint", str(tmp_path / "r18.pt"), "--out", str(tmp_path / "r18.onnx")]) == 2
    assert "r18.onnx exists; pass --force" in capsys.readouterr().err
    assert (tmp_path / "r18.onnx").stat().st_mtime_ns == stamp

    def broken(*args, **kwargs):
        Path(args[2]).write_bytes(b"half a file")
        raise RuntimeError("exporter failed")

    monkeypatch.setattr(torch.onnx, "export", broken)
    capsys.readouterr()
    assert cli(["export", "--checkpoint", str(tmp_path / "r18.pt"), "--out", str(tmp_path / "new.onnx")]) == 2
    assert "new.onnx failed, nothing was written (RuntimeError: exporter failed)" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r18.onnx", "r18.pt"]  # no half-written file
