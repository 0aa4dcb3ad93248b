"""Inference: whole images of any size, overlap tiles, test-time augmentation, overlays, video.

Names are imported lazily so that the torch-free parts (the numpy core used by the ONNX Runtime
predictor, overlays, video) never pull in torch:

- :func:`open_model` (a ``.pt``, run folder or ``.onnx`` -> the predictor ``predict`` runs),
  :class:`Predictor` (torch), :class:`OnnxPredictor` (ONNX Runtime, no torch),
  :class:`Prediction`, :class:`PredictOptions`;
- :func:`labels_from_logits`, :func:`resolve_threshold`: the one decision rule;
- :func:`predict_logits` (logits at input size for ``N x C x H x W`` tensors; tiling and TTA
  optional), :func:`predict_tiled` (numpy overlap-tile core), :func:`with_tta`;
- :func:`blend`, :func:`colorize`, :func:`legend`, :func:`make_palette`; :func:`predict_video`;
  :func:`predict_files` (what ``unetlab predict`` does).
"""

from __future__ import annotations

from unetlab._lazy import lazy_exports

_EXPORTS = {
    "open_model": "open",
    "Predictor": "predictor",
    "OnnxPredictor": "onnx_backend",
    "TorchNetwork": "network",
    "labels_from_logits": "labels",
    "probabilities_from_logits": "labels",
    "resolve_threshold": "labels",
    "needs_tiles": "grid",
    "Prediction": "core",
    "PredictOptions": "core",
    "ArrayPredictor": "core",
    "predict_logits": "forward",
    "model_geometry": "forward",
    "forward_padded": "forward",
    "predict_tiled": "tiling",
    "Geometry": "grid",
    "predict_tiled_tensor": "tiling",
    "with_tta": "tta",
    "blend": "overlay",
    "colorize": "overlay",
    "legend": "overlay",
    "make_palette": "overlay",
    "predict_video": "video",
    "predict_files": "files",
    "discover_inputs": "inputs",
}

__all__, __getattr__ = lazy_exports(__name__, _EXPORTS)
