"""Model artifacts: what a ``.pt`` checkpoint or an exported ``.onnx`` file says about its model.

One object, :class:`ModelCard`, is read from either format (architecture, output channels,
class names and colours, normalisation, geometry, stored threshold); nothing else in the
package reads checkpoint or export metadata. Checkpoints load with ``weights_only=True``.
This package sits below ``inference`` (which turns an artifact into a predictor with
:func:`unetlab.inference.open_model`), so it never imports it. Names are imported lazily.
"""

from __future__ import annotations

from unetlab._lazy import lazy_exports

_EXPORTS = {
    "ModelCard": "card",
    "classes_for_channels": "card",
    "channels_for_classes": "card",
    "default_class_names": "card",
    "Geometry": "geometry",
    "model_geometry": "geometry",
    "read_card": "read",
    "load_network": "read",
    "is_onnx_file": "onnx_file",
    "read_metadata": "onnx_file",
    "open_session": "onnx_file",
    "load_checkpoint": "checkpoint",
    "resolve_checkpoint": "checkpoint",
    "model_from_checkpoint": "checkpoint",
}

__all__, __getattr__ = lazy_exports(__name__, _EXPORTS)
