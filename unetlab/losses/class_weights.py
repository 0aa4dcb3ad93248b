"""Class weights from pixel counts, for imbalanced data (e.g. thin membranes, small objects)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from unetlab.errors import UnetlabError

WEIGHTING_METHODS = ("inverse", "median", "sqrt_inverse")


def class_weights_from_frequencies(
    pixel_counts: Sequence[int] | np.ndarray | torch.Tensor, method: str = "inverse"
) -> torch.Tensor:
    """Per-class loss weights from the number of pixels of each class in the training masks.

    - ``inverse``: total / (K * count_c), so perfectly balanced data gets 1 everywhere;
    - ``median``: median frequency balancing, median(count) / count_c (SegNet);
    - ``sqrt_inverse``: the square root of ``inverse``, a milder correction.

    Classes with no pixel get weight 0 (they cannot be learnt; the median skips them).
    Returns a float32 tensor of length K.
    """
    if method not in WEIGHTING_METHODS:
        raise UnetlabError(
            f"unknown class weighting '{method}'.", hint=f"use one of {list(WEIGHTING_METHODS)}."
        )
    counts = np.asarray(
        pixel_counts.cpu().numpy() if isinstance(pixel_counts, torch.Tensor) else pixel_counts,
        dtype=np.float64,
    ).ravel()
    if counts.size == 0 or not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise UnetlabError(f"pixel counts must be finite and >= 0, got {counts.tolist()}.")
    present = counts > 0
    if not present.any():
        raise UnetlabError(
            "every class has zero pixels, so no class weights can be computed.",
            hint="check that the masks are not all ignore (255).",
        )
    weights = np.zeros_like(counts)
    if method == "median":
        weights[present] = np.median(counts[present]) / counts[present]
    else:
        weights[present] = counts.sum() / (counts.size * counts[present])
        if method == "sqrt_inverse":
            weights = np.sqrt(weights)
    return torch.tensor(weights, dtype=torch.float32)
