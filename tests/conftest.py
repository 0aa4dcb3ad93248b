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
