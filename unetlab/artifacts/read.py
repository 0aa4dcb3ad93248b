"""Open any model file as a card (and, for checkpoints, the torch network).

A ``.onnx`` ending means an export; anything else is a checkpoint file or a run folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from unetlab.artifacts.card import ModelCard
from unetlab.artifacts.onnx_file import is_onnx_file, open_session, read_metadata

if TYPE_CHECKING:
    from torch import nn


def read_card(path: str | Path) -> ModelCard:
    """The card of a checkpoint, run folder or export (a checkpoint's model is rebuilt to know
    its geometry)."""
    if is_onnx_file(path):
        return onnx_card(path)
    return load_network(path)[0]


def onnx_card(path: str | Path, session: Any = None) -> ModelCard:
    """The card of an export (opens a session unless one is given)."""
    session = session if session is not None else open_session(path)
    return ModelCard.from_onnx_metadata(read_metadata(path, session), path)


def load_network(path: str | Path) -> tuple[ModelCard, nn.Module]:
    """A checkpoint's (or run folder's) card and its model, weights loaded, in eval mode."""
    from unetlab.artifacts import checkpoint
    from unetlab.artifacts.geometry import model_geometry

    payload = checkpoint.load_checkpoint(path)
    model = checkpoint.model_from_checkpoint(payload)
    return ModelCard.from_checkpoint(payload, model_geometry(model)), model
