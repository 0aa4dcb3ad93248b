"""Inference: whole images of any size, overlap tiles, test-time augmentation, overlays, video.

Names are imported lazily so that the torch-free parts (the numpy core used by the ONNX Runtime
predictor, overlays, video) never pull in torch:

- :class:`Predictor` (torch, from a checkpoint) and :class:`Prediction`, :class:`PredictOptions`;
- :func:`predict_logits` (logits at input size for ``N x C x H x W`` tensors; tiling and TTA
  optional), :func:`predict_tiled` (numpy overlap-tile core), :func:`with_tta`;
- :func:`blend`, :func:`colorize`, :func:`legend`, :func:`make_palette`; :func:`predict_video`;
  :func:`predict_files` (what ``unetlab predict`` does).
"""

from __future__ import annotations

from unetlab._lazy import lazy_exports

_EXPORTS = {
    "Predictor": "predictor",
    "Prediction": "core",
    "PredictOptions": "core",
    "ArrayPredictor": "core",
    "predict_logits": "forward",
    "model_geometry": "forward",
    "predict_tiled": "tiling",
    "Geometry": "grid",
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
