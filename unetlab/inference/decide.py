"""Compatibility names for numpy labelling; the rule lives in :mod:`unetlab.inference.labels`."""

from __future__ import annotations

import numpy as np

from unetlab.inference.labels import labels_from_logits as _labels
from unetlab.inference.labels import logit_cut
from unetlab.inference.labels import probabilities_from_logits as _probabilities

__all__ = ["labels_from_logits", "logit", "probabilities_from_logits"]


def logit(probability: float) -> float:
    """The logit whose sigmoid is ``probability`` (the cut that a threshold means)."""
    return float(logit_cut(probability))


def labels_from_logits(logits: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """``K x H x W`` logits -> ``H x W`` labels (see :mod:`unetlab.inference.labels`)."""
    return _labels(logits, threshold, channel_axis=0)


def probabilities_from_logits(logits: np.ndarray) -> np.ndarray:
    """``K x H x W`` logits -> ``max(K, 2) x H x W`` float32 class probabilities."""
    return _probabilities(logits, channel_axis=0)
