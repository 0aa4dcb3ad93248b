"""Scores of one image: where a model fails is found image by image, not in the split's mean.

:func:`per_image_scores` counts one image's confusion matrix with :class:`ConfusionMatrix` (so
its IoU, Dice and accuracy follow the same rules as the split's: NaN for a class absent from
both truth and prediction, means over the defined classes) and, for two-class tasks given a
boundary class, adds the EM scores (pixel error, adapted Rand error) as ``unetlab evaluate``
computes them per image. :func:`image_row` is one image's line of a per-image table (what
``unetlab evaluate`` writes to ``per_image.csv`` and the ``unetlab serve`` inspect page ranks),
:func:`worst_first` orders such lines.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from unetlab.metrics.confusion import ConfusionMatrix, LabelArray


def per_image_scores(
    prediction: LabelArray,
    truth: LabelArray,
    num_classes: int,
    ignore_index: int = 255,
    boundary_class: int | None = None,
) -> dict[str, Any]:
    """Scores of one ``H x W`` prediction against its truth mask.

    Returns ``miou``, ``mean_dice``, ``pixel_accuracy`` (floats, NaN when undefined), per-class
    lists ``iou``, ``dice`` and ``support`` (truth pixels), ``pixels`` (scored pixels) and
    ``matrix`` (the ``K x K`` counts, rows = truth). With ``boundary_class`` (two-class tasks):
    ``pixel_error``, ``adapted_rand_error``, ``rand_precision`` and ``rand_recall`` too,
    regions being the connected components outside the boundary class and ignored truth pixels
    not scored (as in evaluate).
    """
    matrix = ConfusionMatrix(num_classes, ignore_index=ignore_index).update(prediction, truth)
    scores = matrix.compute()
    result: dict[str, Any] = {
        "miou": scores["miou"],
        "mean_dice": scores["mean_dice"],
        "pixel_accuracy": scores["pixel_accuracy"],
        "iou": scores["iou"],
        "dice": scores["dice"],
        "support": scores["support"],
        "pixels": matrix.total,
        "matrix": matrix.matrix,
    }
    if boundary_class is not None:
        result.update(_region_scores(prediction, truth, boundary_class, ignore_index))
    return result


def _region_scores(
    prediction: LabelArray, truth: LabelArray, boundary_class: int, ignore_index: int
) -> dict[str, float]:
    from unetlab.metrics.em import adapted_rand_error, membrane_to_regions, pixel_error

    predicted = _numpy(prediction)
    truth = _numpy(truth)
    scored_truth = np.where(truth == ignore_index, boundary_class, truth)  # ignored: not scored
    error, precision, recall = adapted_rand_error(
        membrane_to_regions(predicted, membrane_class=boundary_class),
        membrane_to_regions(scored_truth, membrane_class=boundary_class),
    )
    return {
        "pixel_error": pixel_error(predicted, truth, ignore_index=ignore_index),
        "adapted_rand_error": error,
        "rand_precision": precision,
        "rand_recall": recall,
    }


def _numpy(labels: LabelArray) -> np.ndarray:
    return labels.detach().cpu().numpy() if hasattr(labels, "detach") else np.asarray(labels)


def worst_first_key(row: dict[str, Any], metric: str = "miou") -> tuple[int, float]:
    """Sort key putting the lowest ``metric`` first and undefined (NaN) scores last."""
    value = row.get(metric)
    undefined = value is None or (isinstance(value, float) and math.isnan(value))
    return (1, 0.0) if undefined or value is None else (0, float(value))


ROW_SCORES = (
    "miou",
    "mean_dice",
    "pixel_accuracy",
    "pixel_error",
    "adapted_rand_error",
    "rand_precision",
    "rand_recall",
)
"""The whole-image scores of a per-image row (the last four for two-class tasks only)."""


def image_row(
    sample_id: str,
    prediction: LabelArray,
    truth: LabelArray,
    num_classes: int,
    boundary_class: int | None = None,
    ignore_index: int = 255,
) -> dict[str, Any]:
    """One image's line of a per-image table: ``id``, ``width``, ``height``, the
    :data:`ROW_SCORES` it has (NaN when undefined) and the per-class lists ``iou`` and ``dice``.

    The one definition of a per-image row, shared by ``unetlab evaluate`` (``per_image.csv``,
    the worst panels) and the ``unetlab serve`` inspect page.
    """
    scores = per_image_scores(prediction, truth, num_classes, ignore_index, boundary_class)
    height, width = np.shape(truth)[:2]
    return {
        "id": str(sample_id),
        "width": int(width),
        "height": int(height),
        **{key: float(scores[key]) for key in ROW_SCORES if key in scores},
        "iou": [float(v) for v in scores["iou"]],
        "dice": [float(v) for v in scores["dice"]],
    }


def worst_first(rows: Iterable[dict[str, Any]], metric: str = "miou") -> list[dict[str, Any]]:
    """``rows`` ordered by ``metric``, lowest first, undefined (NaN) last; ties keep their order."""
    return sorted(rows, key=lambda row: worst_first_key(row, metric))
