"""Export: ONNX with the preprocessing inside the graph, and a predictor that needs no torch.

``export_onnx`` (needs torch) and ``OnnxPredictor`` (numpy + onnxruntime only) are imported
lazily, so importing this package pulls in neither torch nor onnxruntime.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "export_onnx": "onnx",
    "export_model": "onnx",
    "OnnxPredictor": "onnx_runtime",
    "read_metadata": "onnx_runtime",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'unetlab.export' has no attribute {name!r}")
    return getattr(importlib.import_module(f"unetlab.export.{_EXPORTS[name]}"), name)
