"""Training and measuring: the run configuration, the trainer, checkpoints, evaluation.

``train(config) -> RunResult`` is the Python API under ``unetlab train``; ``load_config``
builds a :class:`RunConfig` from a preset, a YAML file and overrides. Names are imported
lazily so ``import unetlab.engine`` stays cheap.
"""

from __future__ import annotations

from unetlab._lazy import lazy_exports

_EXPORTS = {
    "RunConfig": "config",
    "load_config": "config",
    "train": "trainer",
    "RunResult": "trainer",
    "TrainingDiverged": "trainer",
    "run_demo": "demo",
    "evaluate": "evaluate",
    "collect_confusion": "measure",
    "EvaluationReport": "report",
    "bench": "bench",
    "save_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "model_from_checkpoint": "checkpoint",
}

__all__, __getattr__ = lazy_exports(__name__, _EXPORTS)
