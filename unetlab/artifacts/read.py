"""Open any model file as a card (and, for checkpoints, the torch network).

A ``.onnx`` ending means an export; anything else is a checkpoint file or a run folder. A
checkpoint's stored post-processing is the run's ``postprocessing.json``
(:func:`postprocessing_path`), read into its card.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unetlab.artifacts.card import ModelCard
from unetlab.artifacts.onnx_file import is_onnx_file, open_session, read_metadata
from unetlab.errors import UnetlabError

POSTPROCESSING_FILE = "postprocessing.json"

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
    card = ModelCard.from_checkpoint(payload, model_geometry(model))
    stored = read_stored_postprocessing(postprocessing_path(card.path))
    return (replace(card, postprocessing=stored) if stored else card), model


def run_folder(checkpoint_path: str | Path) -> Path:
    """The run folder of ``RUN/checkpoints/x.pt``; the checkpoint's own folder otherwise."""
    path = Path(checkpoint_path)
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


def postprocessing_path(checkpoint_path: str | Path) -> Path:
    """Where a checkpoint's post-processing is stored: ``RUN/postprocessing.json`` (beside a
    checkpoint outside a run folder), written by ``unetlab evaluate --save-postprocessing``."""
    return run_folder(checkpoint_path) / POSTPROCESSING_FILE


def read_stored_postprocessing(path: Path) -> dict[str, Any] | None:
    """The post-processing stored in ``path`` (its ``postprocessing`` mapping), None when the
    file does not exist; a clear error when it is not what unetlab writes."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        message = f"cannot read the stored post-processing ({exc.strerror})"
        raise UnetlabError(message, path) from None
    try:
        data = json.loads(text)
        stored = data["postprocessing"]
        if not isinstance(stored, dict):
            raise TypeError("not a mapping")
    except (ValueError, KeyError, TypeError) as exc:
        raise UnetlabError(
            f"not a post-processing file ({type(exc).__name__}: {exc})",
            path,
            "write it with 'unetlab evaluate RUN --data DATA ... --save-postprocessing', or "
            "delete it",
        ) from None
    return stored
