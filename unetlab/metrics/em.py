"""Scores of the EM membrane challenges (ISBI 2012, SNEMI3D): pixel error and adapted Rand.

The Rand scores compare two *instance* labelings: a pair of pixels agrees when both labelings
put it in the same region. Restricted to the truth foreground (truth label 0, the membrane,
is skipped), with n_ij the pixels in truth region i and predicted region j, s_j and t_i the
region sizes and n the pixel count:

    precision = (sum n_ij^2 - n) / (sum s_j^2 - n)   pairs together in both / in the prediction
    recall    = (sum n_ij^2 - n) / (sum t_i^2 - n)   pairs together in both / in the truth
    error     = 1 - 2 precision recall / (precision + recall)

(Arganda-Carreras et al. 2015, Front. Neuroanat. 9:142). The error equals
``skimage.metrics.adapted_rand_error``; note that scikit-image returns precision and recall in
the opposite order to these (documented) meanings (scikit-image issue #6485).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage, sparse

from unetlab.errors import UnetlabError


def _as_array(labels: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        return labels.detach().cpu().numpy()
    return np.asarray(labels)


def _check_same_shape(pred: np.ndarray, truth: np.ndarray) -> None:
    if pred.shape != truth.shape:
        raise UnetlabError(f"prediction {pred.shape} and truth {truth.shape} differ in shape.")


def pixel_error(
    pred: np.ndarray | torch.Tensor, truth: np.ndarray | torch.Tensor, ignore_index: int = 255
) -> float:
    """Share of the (non-ignored) pixels whose predicted class differs from the truth."""
    pred, truth = _as_array(pred), _as_array(truth)
    _check_same_shape(pred, truth)
    keep = truth != ignore_index
    return float(np.mean(pred[keep] != truth[keep])) if keep.any() else math.nan


def adapted_rand_error(
    pred_labels: np.ndarray | torch.Tensor,
    truth_labels: np.ndarray | torch.Tensor,
    ignore_labels: Sequence[int] = (0,),
) -> tuple[float, float, float]:
    """(error, precision, recall) of the foreground-restricted Rand F-score (module docstring).

    Pixels whose truth label is in ``ignore_labels`` are skipped; predicted label 0 is an
    ordinary region. NaN when there is no pair to compare.
    """
    pred, truth = _as_array(pred_labels).ravel(), _as_array(truth_labels).ravel()
    _check_same_shape(pred, truth)
    keep = ~np.isin(truth, list(ignore_labels))
    _, truth_index = np.unique(truth[keep], return_inverse=True)
    _, pred_index = np.unique(pred[keep], return_inverse=True)
    n = int(keep.sum())
    if n == 0:  # no truth foreground (e.g. an image of background only): no pair to compare
        return math.nan, math.nan, math.nan
    table = sparse.coo_matrix(
        (np.ones(n, dtype=np.int64), (truth_index.ravel(), pred_index.ravel()))
    ).tocsr()  # duplicates are summed: table[i, j] = n_ij
    together_both = float((table.data.astype(np.float64) ** 2).sum() - n)
    together_truth = float((np.asarray(table.sum(axis=1), dtype=np.float64) ** 2).sum() - n)
    together_pred = float((np.asarray(table.sum(axis=0), dtype=np.float64) ** 2).sum() - n)

    def share(numerator: float, denominator: float) -> float:
        return numerator / denominator if denominator > 0 else math.nan

    precision = share(together_both, together_pred)
    recall = share(together_both, together_truth)
    error = 1.0 - share(2.0 * together_both, together_pred + together_truth)
    return error, precision, recall


def membrane_to_regions(
    binary_labels: np.ndarray | torch.Tensor, membrane_class: int = 1
) -> np.ndarray:
    """Regions of a membrane/cell segmentation: connected components (4-connectivity) of the
    non-membrane pixels numbered 1..n, membrane pixels 0 (so the Rand scores skip them in the
    truth)."""
    labels = _as_array(binary_labels)
    regions, _ = ndimage.label(labels != membrane_class)
    return regions.astype(np.int32)


def membrane_rand_error(
    pred: np.ndarray | torch.Tensor,
    truth: np.ndarray | torch.Tensor,
    membrane_class: int = 1,
) -> tuple[float, float, float]:
    """Adapted Rand (error, precision, recall) of two class masks of an ISBI-style membrane
    task, after turning each into regions with :func:`membrane_to_regions`."""
    return adapted_rand_error(
        membrane_to_regions(pred, membrane_class), membrane_to_regions(truth, membrane_class)
    )
