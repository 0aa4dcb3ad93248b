"""Predict with an exported ``.onnx`` file through ONNX Runtime: numpy and onnxruntime only.

Nothing here (or in what it imports) needs torch, so a deployment installs ``onnxruntime``,
``numpy`` and ``pillow`` and gets the same padding, tiling, TTA and decision rule as the torch
predictor (:class:`~unetlab.inference.core.ArrayPredictor`). Normalisation is inside the graph;
this side only scales the image to the graph's ``input_scale`` (a 16-bit image fed to a graph
exported for 8-bit data is scaled by 255/65535, as training would have).
"""

from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from unetlab.errors import UnetlabError
from unetlab.inference.core import ArrayPredictor, PredictOptions
from unetlab.inference.grid import Geometry

METADATA_KEY = "unetlab"  # as written by unetlab.export.onnx (which needs torch to import)


def full_scale(dtype: np.dtype) -> float:
    """Full-scale value of an image dtype (255, 65535, or 1 for float images in [0, 1])."""
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    return 1.0


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


class OnnxPredictor(ArrayPredictor):
    """Predict images with an exported model; same interface as the torch ``Predictor``.

    Args:
        path: the ``.onnx`` file written by ``unetlab export``.
        threads: intra-op threads for ONNX Runtime (default: its own choice).
        providers: ONNX Runtime execution providers (default: CPU).
        options: :class:`PredictOptions` fields (``tile=1024``, ``tta="flips"``, ...);
            ``threshold`` defaults to the one stored at export.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        threads: int | None = None,
        providers: list[str] | None = None,
        **options: Any,
    ):
        self.path = Path(path)
        self.session = open_session(self.path, threads, providers)
        self.metadata = read_metadata(self.path, self.session)
        self.input_name = self.session.get_inputs()[0].name
        self.input_scale = float(self.metadata.get("input_scale", 255.0))
        known = {f.name for f in fields(PredictOptions)}
        unknown = set(options) - known
        if unknown:
            raise TypeError(f"unknown options {sorted(unknown)}; known: {sorted(known)}")
        options.setdefault("threshold", float(self.metadata.get("threshold", 0.5)))
        super().__init__(
            self._run,
            self._prepare,
            Geometry.from_dict(self.metadata["geometry"]),
            int(self.metadata["model"]["in_channels"]),
            self.metadata["class_names"],
            self.metadata.get("class_colors"),
            PredictOptions(**options),
        )

    def _prepare(self, tile: np.ndarray) -> np.ndarray:
        scale = self.input_scale / full_scale(tile.dtype)
        x = tile.transpose(2, 0, 1).astype(np.float32)
        return x if scale == 1.0 else x * np.float32(scale)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]


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
