"""Logits -> labels and probabilities: the one decision rule, for torch tensors and numpy arrays.

- K >= 3 output channels: softmax, the label is the argmax; a threshold does not apply.
- 1 channel (sigmoid, binary): class 1 where p = sigmoid(l) > threshold.
- 2 channels (softmax, binary): class 1 where p1 = softmax(l)[1] > threshold, i.e. where
  l1 - l0 > logit(threshold); at the default 0.5 this is the argmax (ties go to class 0).

Both binary forms are decided on the logit side (``l > logit(t)``, in float32), never through a
computed sigmoid, so the torch path (training validation), the numpy path (predict, ONNX
Runtime) and blended tiles give the same labels bit for bit. The threshold a model uses is
chosen by :func:`resolve_threshold`: the one asked for, else the one an export stored, else 0.5.
Works on torch tensors and numpy arrays alike without importing torch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from unetlab.artifacts.card import classes_for_channels
from unetlab.errors import UnetlabError

Array = Any  # torch.Tensor or np.ndarray
DEFAULT_THRESHOLD = 0.5
BINARY_CHANNELS = (1, 2)


def is_binary(out_channels: int) -> bool:
    """Whether a model with this many output channels is a binary (two-class) model."""
    return classes_for_channels(out_channels) == 2


def check_threshold(threshold: float) -> float:
    """``threshold`` as a float strictly inside (0, 1), or a clear error."""
    value = float(threshold)
    if not 0 < value < 1:
        raise UnetlabError(
            f"threshold {threshold} is outside (0, 1)",
            hint="a threshold is a foreground probability strictly between 0 and 1, e.g. 0.3",
        )
    return value


def resolve_threshold(
    out_channels: int,
    requested: float | None = None,
    stored: float | None = None,
    source: str | Path | None = None,
) -> float | None:
    """The foreground threshold a model's labels use; None for multi-class models.

    Binary models (1 or 2 output channels): ``requested``, else ``stored`` (an export's), else
    0.5. Multi-class models decide by argmax: asking for a threshold is an error.
    """
    if not is_binary(out_channels):
        if requested is not None:
            raise UnetlabError(
                f"a threshold applies to binary models (one sigmoid or two softmax output "
                f"channels); this model has {out_channels} output channels and its labels are "
                "their argmax",
                source,
                "leave out --threshold",
            )
        return None
    for value in (requested, stored):
        if value is not None:
            return check_threshold(value)
    return DEFAULT_THRESHOLD


def logit_cut(threshold: float) -> np.float32:
    """The float32 logit whose sigmoid is ``threshold``: the cut the rule compares against."""
    value = check_threshold(threshold)
    return np.float32(math.log(value / (1 - value)))


def _is_numpy(x: Array) -> bool:
    return isinstance(x, np.ndarray)


def _channel(logits: Array, index: int, axis: int) -> Array:
    if _is_numpy(logits):
        return np.take(logits, index, axis=axis).astype(np.float32, copy=False)
    return logits.select(axis, index).float()


def labels_from_logits(
    logits: Array, threshold: float | None = None, channel_axis: int = 0
) -> Array:
    """Class labels from logits (channels along ``channel_axis``: 0 for ``K x H x W``, 1 for
    ``N x K x H x W``), by the rule of the module docstring.

    numpy in: uint8 labels (int32 beyond 256 classes); torch in: int64 labels on its device.
    ``threshold`` None means 0.5 for binary models and is ignored for multi-class ones (use
    :func:`resolve_threshold` to refuse it there).
    """
    channels = logits.shape[channel_axis]
    if channels in BINARY_CHANNELS:
        cut = logit_cut(DEFAULT_THRESHOLD if threshold is None else threshold)
        score = _channel(logits, 0, channel_axis)
        if channels == 2:
            score = _channel(logits, 1, channel_axis) - score
        if _is_numpy(logits):
            return (score > cut).astype(np.uint8)
        return (score > float(cut)).long()
    if _is_numpy(logits):
        return logits.argmax(axis=channel_axis).astype(np.uint8 if channels <= 256 else np.int32)
    return logits.argmax(dim=channel_axis)


def probabilities_from_logits(logits: Array, channel_axis: int = 0) -> Array:
    """Class probabilities (``max(K, 2)`` channels along ``channel_axis``, float32): sigmoid
    and its complement for one channel, softmax otherwise."""
    if _is_numpy(logits):
        logits = logits.astype(np.float32, copy=False)
        if logits.shape[channel_axis] == 1:
            foreground = 1.0 / (1.0 + np.exp(-logits))
            return np.concatenate([1.0 - foreground, foreground], axis=channel_axis)
        shifted = np.exp(logits - logits.max(axis=channel_axis, keepdims=True))
        return shifted / shifted.sum(axis=channel_axis, keepdims=True)
    import torch

    logits = logits.float()
    if logits.shape[channel_axis] == 1:
        foreground = torch.sigmoid(logits)
        return torch.cat([1.0 - foreground, foreground], dim=channel_axis)
    return torch.softmax(logits, dim=channel_axis)
