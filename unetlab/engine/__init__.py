"""Training and measuring: the run configuration, the trainer, checkpoints, evaluation.

``train(config) -> RunResult`` is the Python API under ``unetlab train``; ``load_config``
builds a :class:`RunConfig` from a preset, a YAML file and overrides. Names are imported
lazily so ``import unetlab.engine`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "RunConfig": "config",
    "load_config": "config",
    "train": "trainer",
    "RunResult": "trainer",
    "TrainingDiverged": "trainer",
    "run_demo": "demo",
    "evaluate": "evaluate",
    "collect_confusion": "evaluate",
    "save_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "model_from_checkpoint": "checkpoint",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'unetlab.engine' has no attribute '{name}'")
    return getattr(importlib.import_module(f"unetlab.engine.{module}"), name)
