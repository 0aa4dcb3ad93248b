"""An exported ``.onnx`` file's ``unetlab`` metadata (read and written) and its ONNX Runtime
session.

numpy and onnxruntime only (no torch), so a deployment that installs neither torch nor onnx
can still open an export. :mod:`unetlab.export.onnx` and :mod:`unetlab.export.quantize` write
the properties :func:`card_properties` makes; :func:`read_metadata` reads them back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unetlab.data.preprocess import max_value as full_scale  # noqa: F401  (re-exported: the one full-scale rule)
from unetlab.errors import UnetlabError

METADATA_KEY = "unetlab"
"""The ONNX metadata property that holds the model card as JSON."""

if TYPE_CHECKING:
    from unetlab.artifacts.card import ModelCard


def card_properties(card: ModelCard) -> dict[str, str]:
    """The ONNX metadata properties that store ``card`` (for ``onnx.helper.set_model_props``)."""
    return {METADATA_KEY: json.dumps(card.to_onnx_metadata())}


def is_onnx_file(path: str | Path) -> bool:
    """Whether ``path`` names an exported model (by its ending, as predict and bench decide)."""
    return Path(path).suffix.lower() == ".onnx"


def read_metadata(path: str | Path, session: Any = None) -> dict[str, Any]:
    """The ``unetlab`` metadata of an exported file (class names, geometry, ...)."""
    if session is None:
        session = open_session(Path(path), threads=None)
    props = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in props:
        raise UnetlabError(
            "this ONNX file was not exported by unetlab (no 'unetlab' metadata: class names, "
            "normalisation and size rules are unknown)",
            path,
            "export it with 'unetlab export CHECKPOINT --format onnx'",
        )
    return json.loads(props[METADATA_KEY])


def open_session(path: str | Path, threads: int | None = None, providers: list[str] | None = None):
    """An ONNX Runtime session for ``path`` (CPU by default), with clear errors."""
    path = Path(path)
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise UnetlabError(
            f"the ONNX backend needs onnxruntime ({exc})", hint="pip install onnxruntime"
        ) from None
    if not path.is_file():
        raise UnetlabError("ONNX model not found", path, "check the path")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
    try:
        return ort.InferenceSession(
            os.fspath(path), options, providers=providers or ["CPUExecutionProvider"]
        )
    except Exception as exc:
        raise UnetlabError(
            f"ONNX Runtime cannot load this file ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})",
            path,
            "re-export it with 'unetlab export'; check that it is a complete .onnx file",
        ) from None
