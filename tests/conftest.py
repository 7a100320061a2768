"""Shared fixtures: the benchmark data (``../shared/data``, read-only) or, where it is absent, the package's embedded
samples in the same manifest format, so that every test runs on a fresh machine; deterministic torch."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import torch

from rensenet.demo import sample_root

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RENSENET_SHARED_DATA", REPO.parent / "shared" / "data"))
TESTS_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """``../shared/data`` when it is there, else the embedded samples (lung-nodule-ct, lung-nodule-scans,
    kidney-stone-scans): the same tasks, patients and splits, fewer of them."""
    if (SHARED_DATA / "lung-nodule-ct" / "manifest.csv").exists():
        return SHARED_DATA
    return sample_root()


def small_manifest(root: Path, tmp: Path, task: str = "lung-nodule-ct", per_split=None) -> Path:
    """A balanced subset of a task (the first images of each class per split), with absolute paths, written to
    ``tmp`` (the data folders stay read-only)."""
    per_split = per_split or {"train": 64, "val": 32, "test": 32}
    src = root / task
    df = pd.read_csv(src / "manifest.csv", keep_default_na=False)
    parts = []
    for split, n in per_split.items():
        rows = df[df.split == split]
        classes = sorted(rows.label.unique())
        parts.append(pd.concat([rows[rows.label == c].head(n // len(classes)) for c in classes]))
    out = pd.concat(parts)
    for col in ("path", "mask_path"):
        out[col] = [str(src / v) if v else "" for v in out[col]]
    tmp.mkdir(parents=True, exist_ok=True)
    out.to_csv(tmp / "manifest.csv", index=False)
    return tmp


@pytest.fixture(scope="session")
def lung_small(data_root: Path, tmp_path_factory) -> Path:
    """64 train, 32 val, 32 test windows of lung-nodule-ct, balanced."""
    return small_manifest(data_root, tmp_path_factory.mktemp("lung"))
