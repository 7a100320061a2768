"""The README's first line: the demo on the embedded samples (here on the shipped weights, as it runs in seconds)."""
from __future__ import annotations

import re
from pathlib import Path

from rensenet.cli.main import main as cli
from rensenet.models.zoo import zoo_entries


def test_the_pretrained_demo_scores_scans_and_reports(tmp_path: Path) -> None:
    assert cli(["demo", "--pretrained", "--out", str(tmp_path / "demo")]) == 0
    out = tmp_path / "demo"
    report = (out / "report.md").read_text()
    assert "## 1. Is there a nodule in this window?" in report and "## 2. Where are the stones in this slice?" in report
    assert "rensenet_s.lidc_nodule_window" in report and "rensenet_s.kidney_stone_scan" in report
    auc = float(re.search(r"auc\s+([0-9.]+)", report).group(1))
    cpm = float(re.search(r"CPM ([0-9.]+)", report).group(1))
    stones = next(e for e in zoo_entries() if e["tag"] == "kidney_stone_scan")["metrics"]["scans"]["cpm"]
    assert auc > 0.85  # the sample's lung test patients; the card (all of them) says 0.92
    assert stones["ci_low"] <= cpm <= stones["ci_high"]  # the sample holds every kidney test study
    links = re.findall(r"\]\(([^)]+)\)", report)
    assert links and all((out / link).is_file() for link in links), [l for l in links if not (out / l).is_file()]
    assert (out / "scans" / "scan" / "froc.json").is_file() and list((out / "scans" / "scan" / "overlays").glob("*.png"))
