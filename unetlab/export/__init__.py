"""Export: ONNX with the preprocessing inside the graph, and a predictor that needs no torch.

``export_onnx`` (needs torch) and ``OnnxPredictor`` (numpy + onnxruntime only) are imported
lazily, so importing this package pulls in neither torch nor onnxruntime.
"""

from __future__ import annotations

from unetlab._lazy import lazy_exports

_EXPORTS = {
    "export_onnx": "onnx",
    "export_model": "onnx",
    "OnnxPredictor": "onnx_runtime",
    "read_metadata": "onnx_runtime",
}

__all__, __getattr__ = lazy_exports(__name__, _EXPORTS)
