"""Checkpoints: written atomically, self-describing; read by :mod:`unetlab.artifacts.checkpoint`.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so that
``torch.load(weights_only=True)`` can read it and a file crafted to run code is refused.
Keys (``format`` 1):

- ``model``: ``{"name", "num_classes", "in_channels", "options"}`` for
  :func:`unetlab.models.build_model`;
- ``state_dict``: the model weights (never wrapped in DDP's ``module.`` prefix);
- ``data``: ``{"class_names", "class_colors", "mean", "std"}``: everything predict/export need;
- ``config``: the whole run configuration as a dict;
- ``epoch`` (completed epochs), ``global_step``, ``best_metric``, ``metrics``;
- for resuming: ``optimizer``, ``scheduler`` (``{name, elapsed}``: the learning rate is a
  function of progress), ``scaler``, ``rng`` (one state per rank, tensors and ints only),
  ``early_stopping``, ``history`` (the metrics rows) and ``position`` (step in the epoch and
  the partial epoch's loss sums, for a mid-epoch resume).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

# reading lives with the other model artifacts (below inference and export); re-exported here
from unetlab.artifacts.checkpoint import (
    CHECKPOINT_NAMES,
    first_line,
    load_checkpoint,
    load_state_dict_checked,
    model_from_checkpoint,
    resolve_checkpoint,
)

__all__ = [
    "CHECKPOINT_NAMES",
    "FORMAT",
    "first_line",
    "load_checkpoint",
    "load_state_dict_checked",
    "model_from_checkpoint",
    "resolve_checkpoint",
    "save_checkpoint",
]

FORMAT = 1


def save_checkpoint(
    payload: dict[str, Any], path: str | Path, overwrite: bool = False
) -> Path:
    """Write ``payload`` to ``path`` atomically (:func:`unetlab.fs.atomic.write_file`: temp
    file in the same folder, fsync, rename; the user's umask; never over a file this invocation
    did not create unless ``overwrite``).

    A run killed at any moment leaves either the previous file or the new one, never half of it.
    """
    from unetlab.fs.atomic import remove_stale_temps, write_file

    path = Path(path)
    remove_stale_temps(path)  # left by a run killed mid-write
    payload = {"format": FORMAT, **payload}
    return write_file(
        path, lambda handle: torch.save(payload, handle), overwrite=overwrite, durable=True
    )
