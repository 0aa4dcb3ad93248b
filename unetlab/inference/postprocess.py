"""Logits -> probabilities and class labels, one rule for every consumer.

A model with one output channel is binary (sigmoid, class 1 where p > threshold); a model with
K >= 2 channels is multi-class (softmax, argmax). Training validation, evaluate, predict and the
ONNX predictor all go through these functions so they can never disagree.
"""

from __future__ import annotations

import torch


def logits_to_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """N x K x H x W logits -> N x max(K, 2) x H x W class probabilities."""
    if logits.shape[1] == 1:
        foreground = torch.sigmoid(logits.float())
        return torch.cat([1.0 - foreground, foreground], dim=1)
    return torch.softmax(logits.float(), dim=1)


def logits_to_labels(logits: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """N x K x H x W logits -> N x H x W int64 labels (``threshold`` applies to binary models)."""
    if logits.shape[1] == 1:
        return (torch.sigmoid(logits.float()[:, 0]) > threshold).long()
    return logits.argmax(dim=1)


def num_output_classes(model_channels: int) -> int:
    """How many classes a model with this many output channels predicts (1 channel -> 2)."""
    return max(model_channels, 2)
