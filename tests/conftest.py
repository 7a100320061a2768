"""Shared fixtures: the benchmark data in ../shared/data (read-only) and deterministic torch."""
from __future__ import annotations

import os
from pathlib import Path

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
