"""Shared fixtures: the benchmark data in ../shared/data (read-only) and deterministic torch."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RENSENET_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "lung-nodule-ct" / "manifest.csv").exists():
        pytest.skip(f"benchmark data not found at {SHARED_DATA} (set RENSENET_SHARED_DATA)")
    return SHARED_DATA


def small_manifest(shared: Path, tmp: Path, task: str = "lung-nodule-ct", per_split=None) -> Path:
    """A balanced subset of a shared task, whole patients, with absolute paths (shared/ stays read-only)."""
    per_split = per_split or {"train": 64, "val": 32, "test": 32}
    src = shared / task
    df = pd.read_csv(src / "manifest.csv", keep_default_na=False)
    parts = []
    for split, n in per_split.items():
        rows = df[df.split == split]
        parts.append(pd.concat([rows[rows.label == c].head(n // 2) for c in (0, 1)]))
    out = pd.concat(parts)
    for col in ("path", "mask_path"):
        out[col] = [str(src / v) if v else "" for v in out[col]]
    tmp.mkdir(parents=True, exist_ok=True)
    out.to_csv(tmp / "manifest.csv", index=False)
    return tmp


@pytest.fixture(scope="session")
def lung_small(shared_data: Path, tmp_path_factory) -> Path:
    """64 train, 32 val, 32 test windows of lung-nodule-ct, balanced."""
    return small_manifest(shared_data, tmp_path_factory.mktemp("lung"))
