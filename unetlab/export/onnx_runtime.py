"""Compatibility names: the ONNX Runtime predictor lives in :mod:`unetlab.inference.onnx_backend`
and the reading of exports in :mod:`unetlab.artifacts.onnx_file` (both torch-free)."""

from __future__ import annotations

from unetlab.artifacts.onnx_file import full_scale, open_session, read_metadata
from unetlab.inference.onnx_backend import OnnxPredictor

__all__ = ["OnnxPredictor", "full_scale", "open_session", "read_metadata"]
