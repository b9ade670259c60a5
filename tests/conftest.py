"""Shared fixtures: a tiny synthetic dataset generated once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stages.synthetic import SyntheticConfig, ensure_synthetic

# Penn-Fudan lives beside the project (never copied into it); tests that need it skip without it.
PENNFUDAN = Path(os.environ.get("PENNFUDAN_DIR",
                                Path(__file__).resolve().parents[2] / "shared" / "datasets" / "PennFudanPed"))

TINY = SyntheticConfig(seed=0, n_train=8, n_val=4)


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def tiny_synthetic(data_root) -> Path:
    """Folder of an 8 + 4 image synthetic set (generated once, shared by the tests)."""
    return ensure_synthetic(TINY, data_root, verbose=False)


@pytest.fixture
def pennfudan() -> Path:
    if not (PENNFUDAN / "PNGImages").is_dir():
        pytest.skip(f"Penn-Fudan not found at {PENNFUDAN} (set PENNFUDAN_DIR to its folder)")
    return PENNFUDAN
