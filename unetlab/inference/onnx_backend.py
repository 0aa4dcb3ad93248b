"""Predict with an exported ``.onnx`` file through ONNX Runtime: numpy and onnxruntime only.

Nothing here (or in what it imports) needs torch, so a deployment installs ``onnxruntime``,
``numpy`` and ``pillow`` and gets the same padding, tiling, TTA and decision rule as the torch
predictor (:class:`~unetlab.inference.core.ArrayPredictor`). Normalisation is inside the graph;
this side only scales the image to the graph's ``input_scale`` (a 16-bit image fed to a graph
exported for 8-bit data is scaled by 255/65535, as training would have).
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from unetlab.artifacts.card import ModelCard
from unetlab.artifacts.onnx_file import full_scale, open_session, read_metadata
from unetlab.inference.core import ArrayPredictor, PredictOptions
from unetlab.inference.labels import resolve_threshold
from unetlab.inference.tta import resolve_tta


class OnnxPredictor(ArrayPredictor):
    """Predict images with an exported model; same interface as the torch ``Predictor``.

    Args:
        path: the ``.onnx`` file written by ``unetlab export``.
        threads: intra-op threads for ONNX Runtime (default: its own choice).
        providers: ONNX Runtime execution providers (default: CPU).
        options: :class:`PredictOptions` fields (``tile=1024``, ``tta="flips"``, ...);
            ``threshold`` defaults to the one stored at export (binary models).
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
        self.threads = threads
        self.session = open_session(self.path, threads, providers)
        self.metadata = read_metadata(self.path, self.session)
        self.card = ModelCard.from_onnx_metadata(self.metadata, self.path)
        self.input_name = self.session.get_inputs()[0].name
        self.input_scale = self.card.input_scale
        known = {f.name for f in fields(PredictOptions)}
        unknown = set(options) - known
        if unknown:
            raise TypeError(f"unknown options {sorted(unknown)}; known: {sorted(known)}")
        options["threshold"] = resolve_threshold(
            self.card.out_channels, options.get("threshold"), self.card.threshold, self.path
        )
        options["tta"] = resolve_tta(options.get("tta"), self.card)
        super().__init__(
            self._run,
            self._prepare,
            self.card.geometry,
            self.card.in_channels,
            list(self.card.class_names),
            list(self.card.class_colors),
            PredictOptions(**options),
        )

    @property
    def settings(self) -> dict[str, Any]:
        return {
            "backend": "onnx",
            "device": "cpu",
            "providers": list(self.session.get_providers()),
            "precision": "int8" if self.metadata.get("quantization") else "fp32",
            "threads": self.threads or "default",
        }

    def _prepare(self, tile: np.ndarray) -> np.ndarray:
        scale = self.input_scale / full_scale(tile.dtype)
        x = tile.transpose(2, 0, 1).astype(np.float32)
        return x if scale == 1.0 else x * np.float32(scale)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]
