"""The whole-image benchmark's detector anchor (torchvision FCOS): boxes follow the flips, candidates are box
centres in the scan's pixel convention, it learns real nodules, and it is recorded and drawn like the classifiers."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import small_manifest

from rensenet.benchmark.anchor import BoxImages, build_detector, detect, val_cpm
from rensenet.cli.main import main as cli
from rensenet.data import read_manifest, select_split


class _Always:
    def random(self) -> float:  # every flip taken
        return 0.0


@pytest.fixture(scope="module")
def lung_scans(data_root: Path, tmp_path_factory) -> Path:
    """48 train, 16 val and 16 test whole views of lung-nodule-scans, in a folder named like the task."""
    return small_manifest(data_root, tmp_path_factory.mktemp("scans") / "lung-nodule-scans", task="lung-nodule-scans",
                          per_split={"train": 48, "val": 16, "test": 16})


def test_flips_move_the_boxes_with_the_image(lung_scans: Path) -> None:
    images = BoxImages(select_split(read_manifest(lung_scans), "train").iloc[:1])
    x0, y0, x1, y1 = images.boxes[0][0]
    h, w = images.images[0].shape
    image, target = images.sample(0, _Always())
    assert image.shape == (3, h, w) and torch.equal(image[0], images.images[0].flip(0).flip(1))
    assert target["boxes"][0].tolist() == [w - x1, h - y1, w - x0, h - y0]  # exclusive ends, by hand
    inside = image[0, int(h - y1):int(h - y0), int(w - x1):int(w - x0)]
    original = images.images[0][int(y0):int(y1), int(x0):int(x1)]
    assert torch.equal(inside, original.flip(0).flip(1))  # the same pixels, mirrored


def test_candidates_are_box_centres_as_pixel_indices(lung_scans: Path) -> None:
    """A box over pixels 10..29 (edges 10 and 30) has its centre at pixel 19.5, the manifest box's centre."""
    images = BoxImages(select_split(read_manifest(lung_scans), "test").iloc[:2])

    class Fixed(torch.nn.Module):
        def forward(self, batch):
            return [{"boxes": torch.tensor([[10.0, 20.0, 30.0, 60.0]]), "scores": torch.tensor([0.7])} for _ in batch]

    found = detect(Fixed(), images, batch_size=1)
    assert list(found.columns[:5]) == ["path", "slice", "x", "y", "score"] and len(found) == 2
    assert found[["x", "y", "score", "size_px"]].iloc[0].tolist() == pytest.approx([19.5, 39.5, 0.7, 40.0])
    assert found["path"].tolist() == images.paths


def test_the_detector_learns_and_is_recorded_and_drawn_like_the_classifiers(lung_scans: Path, tmp_path: Path,
                                                                             monkeypatch) -> None:
    from PIL import Image as PILImage

    from rensenet.benchmark import SCAN_RECORD_FIELDS
    from rensenet.evaluation.scans import evaluate_scans

    config = {"kind": "scans", "data_root": str(lung_scans.parent), "out": "runs", "results": "scans.json",
              "report": "report/SCANS.md", "seeds": [0], "epochs": 4, "n_boot": 20,
              "train": {"batch_size": 16, "windows_per_image": 2}, "tasks": {"lung-nodule-scans": {"patch_size": 48}},
              "models": {"rensenet_s": {"model": "rensenet_s"},
                         "fcos": {"model": "resnet18", "detector": "fcos", "lr": 0.001}}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)
    assert cli(["benchmark", "--config", "s.yaml"]) == 0
    records = {r["model"]: r for r in json.loads(Path("scans.json").read_text())}
    fcos = records["fcos"]
    assert set(SCAN_RECORD_FIELDS) <= set(fcos) and fcos["detector"] == "fcos" and fcos["image_passes"] == 4 * 48
    seed = Path("runs") / "lung-nodule-scans" / "fcos" / "seed0"
    again = evaluate_scans(seed / "scan" / "candidates.csv", lung_scans, split="test", n_boot=20)
    assert fcos["cpm"] == pytest.approx(again["cpm"]["value"]) and fcos["gflops_per_slice"] > 1
    # it learns: the chosen epoch's val CPM against the same detector untrained (about 0.06 here)
    torch.manual_seed(0)
    untrained = val_cpm(build_detector(short_side=96, long_side=96), BoxImages(select_split(read_manifest(lung_scans), "val")))
    best = pd.read_csv(seed / "run" / "history.csv")["val_cpm"].max()
    assert best > untrained["val_cpm"] + 0.25, (best, untrained)
    report = Path("report/SCANS.md").read_text()
    assert "| fcos | 1 |" in report and "slices_lung-nodule-scans.png" in report
    figure = PILImage.open("report/slices_lung-nodule-scans.png")
    assert figure.size[0] > 200 and figure.size[1] > 2 * figure.size[0]  # 8 rows of 2 models
    pixels = np.asarray(figure.convert("RGB")).astype(int)
    assert ((pixels[..., 1] > 200) & (pixels[..., 0] < 100) & (pixels[..., 2] < 100)).sum() > 50  # green lesion boxes


def test_a_detector_entry_outside_a_scans_benchmark_is_refused(tmp_path: Path) -> None:
    from rensenet.benchmark import BenchmarkConfig

    path = tmp_path / "b.yaml"
    path.write_text(yaml.safe_dump({"tasks": {"t": {}}, "models": {"d": {"model": "resnet18", "detector": "fcos"}}}))
    with pytest.raises(ValueError, match="the only detector is 'fcos'.*kind: scans"):
        BenchmarkConfig.load(path)
