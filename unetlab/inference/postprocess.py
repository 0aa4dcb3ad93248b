"""Compatibility names for torch labelling; the rule lives in :mod:`unetlab.inference.labels`."""

from __future__ import annotations

from typing import Any

from unetlab.artifacts.card import classes_for_channels
from unetlab.inference.labels import labels_from_logits, probabilities_from_logits

__all__ = ["logits_to_labels", "logits_to_probabilities", "num_output_classes"]


def logits_to_probabilities(logits: Any) -> Any:
    """N x K x H x W logits -> N x max(K, 2) x H x W class probabilities."""
    return probabilities_from_logits(logits, channel_axis=1)


def logits_to_labels(logits: Any, threshold: float = 0.5) -> Any:
    """N x K x H x W logits -> N x H x W labels (``threshold`` for binary models)."""
    return labels_from_logits(logits, threshold, channel_axis=1)


def num_output_classes(model_channels: int) -> int:
    """How many classes a model with this many output channels predicts (1 channel -> 2)."""
    return classes_for_channels(model_channels)
