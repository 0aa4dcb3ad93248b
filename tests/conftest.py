"""Shared test fixtures: real datasets beside the checkout, tiny seeded randomness."""

from __future__ import annotations

import os
from pathlib import Path

# Tiny test models run 8-30x faster on one thread than with OpenMP spinning on a busy 2-core
# machine; subprocesses started by tests inherit this.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pytest
import torch
from hypothesis import settings

# CI=true (set by most CI services and by .ci/run): the same examples on every run, so a red
# build points at a change, not at a lucky draw (HYPOTHESIS_PROFILE picks another profile).
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") == "true" else "default")
)

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

SHARED_DATASETS = Path(
    os.environ.get(
        "UNETLAB_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"
    )
)


def shared_dataset(name: str) -> Path:
    """Path of a real dataset in ../shared/datasets, or skip the test with the reason."""
    path = SHARED_DATASETS / name
    if not path.is_dir():
        pytest.skip(f"real dataset '{name}' not found at {path} (set UNETLAB_DATASETS)")
    return path


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture
def rng() -> np.random.Generator:
    """A generator seeded for this test alone: its data never depends on which tests ran
    before (a module-level generator's draws do)."""
    return np.random.default_rng(0)
