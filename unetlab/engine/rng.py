"""Random state: seeding, and capturing/restoring it as tensors and numbers only.

Checkpoints are loaded with ``torch.load(weights_only=True)``, which refuses arbitrary Python
objects, so the NumPy and Python generator states (tuples holding arrays) are stored as plain
tensors and ints here and rebuilt on load.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (all devices); optionally ask for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def derived_seed(*parts: int) -> int:
    """A well-mixed 32-bit seed from several integers (run seed, epoch, sample, rank...)."""
    return int(np.random.SeedSequence([abs(int(p)) for p in parts]).generate_state(1)[0])


def capture_rng() -> dict[str, Any]:
    """The state of every generator this process uses, as tensors and numbers."""
    legacy = np.random.get_state(legacy=True)
    if isinstance(legacy, dict):  # only for a bit generator other than np.random's MT19937
        raise TypeError(f"unexpected numpy global generator {legacy.get('bit_generator')}")
    kind, keys, pos, has_gauss, cached = legacy
    version, py_state, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {
            "version": int(version),
            "state": torch.tensor(py_state, dtype=torch.int64),
            "gauss": gauss,
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch"].cpu())
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    python_state = state["python"]
    random.setstate(
        (
            python_state["version"],
            tuple(int(v) for v in python_state["state"].tolist()),
            python_state["gauss"],
        )
    )
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with every global generator seeded by ``seed``, then put them back."""
    saved = capture_rng()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        restore_rng(saved)
