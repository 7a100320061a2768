"""The shipped weights: timm tags that load offline and verified, scoring on test what their cards say."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch

import rensenet  # noqa: F401
from rensenet.base import load_model, weights_file
from rensenet.cli.main import main as cli
from rensenet.models.zoo import resolve_tag, weights_dir, zoo_entries

ENTRIES = {f"{e['architecture']}.{e['tag']}": e for e in zoo_entries()}
REPO = Path(__file__).resolve().parents[1]


def test_the_package_ships_four_verified_tags_under_10_mb() -> None:
    assert sorted(ENTRIES) == ["rensenet_s.kidney_stone_scan", "rensenet_s.kidney_stone_window",
                               "rensenet_s.lidc_nodule_scan", "rensenet_s.lidc_nodule_window"]
    assert sorted(timm.list_pretrained("rensenet*")) == sorted(ENTRIES)
    assert sum((weights_dir() / e["file"]).stat().st_size for e in ENTRIES.values()) < 10e6
    for name, e in ENTRIES.items():
        assert (REPO / e["card"]).is_file() and e["max_logit_diff_to_float32"] < 1e-3
        assert resolve_tag(name) == weights_dir() / e["file"]


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_a_tag_loads_the_timm_way_and_as_a_checkpoint(name: str) -> None:
    model = timm.create_model(name, pretrained=True).eval()
    same, cfg = load_model(weights_file(tag=name))
    x = torch.randn(2, 1, *model.pretrained_cfg["input_size"][1:])
    with torch.no_grad():
        assert torch.allclose(model(x), same(x), atol=1e-6)
    assert list(model.pretrained_cfg["label_names"]) == cfg.class_names and cfg.mean == ENTRIES[name]["mean"]
    three = timm.create_model(name, pretrained=True, in_chans=3, num_classes=5)  # adapted as timm adapts
    assert three(torch.randn(1, 3, 64, 64)).shape == (1, 5)


def test_a_file_that_changed_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from rensenet.models import zoo

    fake = tmp_path / "weights"
    shutil.copytree(weights_dir(), fake)
    with open(fake / "rensenet_s.kidney_stone_scan.pt", "ab") as f:
        f.write(b"\0")
    monkeypatch.setattr(zoo, "weights_dir", lambda: fake)
    with pytest.raises(ValueError, match="its sha256 is not the one recorded for rensenet_s.kidney_stone_scan"):
        resolve_tag("rensenet_s.kidney_stone_scan")
    with pytest.raises(ValueError, match=r"unknown pretrained weights 'rensenet_s.nope'; the package ships: "
                                         r"rensenet_s.kidney_stone_scan, rensenet_s.kidney_stone_window"):
        resolve_tag("rensenet_s.nope")


def _card_metric(name: str, kind: str) -> dict:
    m = ENTRIES[name]["metrics"]
    return m["scans"]["cpm"] if kind == "scans" else m["windows"]["auc"]


@pytest.mark.parametrize("name", [n for n in sorted(ENTRIES) if n.endswith("_window")])
def test_window_weights_score_their_card_on_test(name: str, data_root: Path, tmp_path: Path) -> None:
    """Test AUC on the shared data's test split, or on the embedded sample's (the same patients, or a part of them),
    within the card's 95 % interval."""
    task = ENTRIES[name]["metrics"]["windows"]["task"]
    assert cli(["evaluate", "--model", name, "--data", str(data_root / task), "--split", "test",
                "--out", str(tmp_path), "--n-boot", "20"]) == 0
    auc = json.loads((tmp_path / "metrics.json").read_text())["auc"]["value"]
    card = _card_metric(name, "windows")
    assert card["ci_low"] <= auc <= card["ci_high"], (auc, card)


@pytest.mark.parametrize("name", [n for n in sorted(ENTRIES) if n.endswith("_scan")])
def test_scan_weights_score_their_card_on_test(name: str, data_root: Path, tmp_path: Path) -> None:
    task = ENTRIES[name]["metrics"]["scans"]["task"]
    assert cli(["scan", "--model", name, "--data", str(data_root / task), "--split", "test", "--out", str(tmp_path),
                "--overlays", "0", "--no-progress"]) == 0
    cpm = json.loads((tmp_path / "froc.json").read_text())["cpm"]["value"]
    card = _card_metric(name, "scans")
    assert card["ci_low"] <= cpm <= card["ci_high"], (cpm, card)


def test_the_cli_takes_a_tag_with_its_window_and_classes(tmp_path: Path, capsys) -> None:
    import pydicom.data
    assert cli(["predict", "--model", "rensenet_s.lidc_nodule_window", pydicom.data.get_testdata_file("CT_small.dcm"),
                "--out", str(tmp_path / "p.csv")]) == 0  # the lung window comes with the weights
    assert "prob_nodule" in (tmp_path / "p.csv").read_text().splitlines()[0]
    assert cli(["scan", "--model", "rensenet_s.nope", "x.png", "--out", str(tmp_path / "s")]) == 2
    assert "the package ships: rensenet_s.kidney_stone_scan" in capsys.readouterr().err


@pytest.mark.parametrize("name", [n for n in sorted(ENTRIES) if n.endswith("_scan")])
def test_detectors_carry_the_scan_settings_chosen_on_val(name: str) -> None:
    from rensenet.base import load_checkpoint
    from rensenet.scanning.run import ScanSettings

    path = resolve_tag(name)
    choice = ENTRIES[name]["metrics"]["scan_choice"]
    assert choice["chosen"] == max(choice["tried"], key=lambda r: r["cpm"]["value"])["settings"]  # the best val CPM
    assert load_checkpoint(path)["scan"] == choice["chosen"]
    settings = ScanSettings.for_weights(path)
    assert all(getattr(settings, k) == v for k, v in choice["chosen"].items())
    assert ScanSettings.for_weights(path, refine="map", stride=4).refine == "map"  # what the user gives wins
