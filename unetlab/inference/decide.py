"""Logits -> labels and probabilities in numpy, for code that must run without torch.

Same rule as :mod:`unetlab.inference.postprocess` (one channel: sigmoid and ``threshold``;
K >= 2: softmax and argmax), plus ``threshold`` for two-class softmax models (class 1 where its
probability exceeds it), which equals the argmax at the default 0.5.
"""

from __future__ import annotations

import numpy as np


def logit(probability: float) -> float:
    """The logit whose sigmoid is ``probability`` (the cut that a threshold means)."""
    if not 0 < probability < 1:
        raise ValueError(f"threshold must lie strictly between 0 and 1, got {probability}")
    return float(np.log(probability / (1 - probability)))


def labels_from_logits(logits: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """``K x H x W`` logits -> ``H x W`` uint8 labels (int32 beyond 256 classes)."""
    if len(logits) == 1:
        labels = logits[0] > logit(threshold)
    elif len(logits) == 2:
        # p1 > t  <=>  l1 - l0 > logit(t); ties go to class 0 like argmax
        labels = (logits[1].astype(np.float32) - logits[0]) > logit(threshold)
    else:
        labels = logits.argmax(axis=0)
    return labels.astype(np.uint8 if len(logits) <= 256 else np.int32)


def probabilities_from_logits(logits: np.ndarray) -> np.ndarray:
    """``K x H x W`` logits -> ``max(K, 2) x H x W`` float32 class probabilities."""
    logits = logits.astype(np.float32, copy=False)
    if len(logits) == 1:
        foreground = 1.0 / (1.0 + np.exp(-logits[0]))
        return np.stack([1.0 - foreground, foreground])
    shifted = np.exp(logits - logits.max(axis=0, keepdims=True))
    return shifted / shifted.sum(axis=0, keepdims=True)
