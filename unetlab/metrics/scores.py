"""Scores derived from a confusion matrix (rows = truth, columns = prediction).

Per class c, with tp = M[c, c], truth = row sum, predicted = column sum:

    IoU = tp / (truth + predicted - tp)     recall (= pixel accuracy PA) = tp / truth
    precision = tp / predicted              Dice (= F1) = 2 tp / (truth + predicted)

A ratio whose denominator is 0 is undefined and reported as NaN: a class absent from both the
truth and the prediction has NaN everywhere; a class never predicted has NaN precision. Means
(mIoU, mPA, mean Dice, mean precision) skip NaN, so absent classes do not drag them down.
Pixel accuracy is trace / total; frequency-weighted IoU weighs each class's IoU by its share
of the truth pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from unetlab.errors import UnetlabError

PER_CLASS_SCORES = ("iou", "recall", "precision", "dice")
MEAN_SCORES = {"iou": "miou", "recall": "mpa", "precision": "mean_precision", "dice": "mean_dice"}


def nanmean(values: np.ndarray) -> float:
    """Mean of the defined (non-NaN) values; NaN when none is defined (no warning)."""
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else math.nan


def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator with NaN where the denominator is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.maximum(denominator, 1), math.nan)


def scores_from_matrix(matrix: np.ndarray) -> dict[str, object]:
    """Per-class and mean scores of a K x K confusion matrix (see the module docstring).

    Returns per-class lists (``iou``, ``recall``, ``precision``, ``dice``, ``support`` = truth
    pixels) and floats ``miou``, ``mpa``, ``mean_precision``, ``mean_dice``,
    ``pixel_accuracy``, ``fwiou``.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    tp = np.diag(matrix)
    truth = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    total = matrix.sum()
    per_class = {
        "iou": ratio(tp, truth + predicted - tp),
        "recall": ratio(tp, truth),
        "precision": ratio(tp, predicted),
        "dice": ratio(2 * tp, truth + predicted),
    }
    result: dict[str, object] = {name: values.tolist() for name, values in per_class.items()}
    result["support"] = truth.astype(np.int64).tolist()
    for name, mean_name in MEAN_SCORES.items():
        result[mean_name] = nanmean(per_class[name])
    result["pixel_accuracy"] = float(tp.sum() / total) if total else math.nan
    present = truth > 0
    result["fwiou"] = (
        float((truth[present] * per_class["iou"][present]).sum() / total) if total else math.nan
    )
    return result


def format_scores_table(scores: dict[str, Any], class_names: Sequence[str] | None) -> str:
    """A plain-text table of the per-class scores in percent, means and overall accuracy."""
    support = scores["support"]
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(support))]
    if len(names) != len(support):
        raise UnetlabError(
            f"{len(names)} class names were given for a confusion matrix of {len(support)} "
            "classes.",
            hint="give one name per class, in class-index order (e.g. the dataset classes.txt).",
        )

    def percent(value: float) -> str:
        return "-" if math.isnan(value) else f"{100 * value:.2f}"

    width = max(len("class"), *(len(name) for name in names))
    header = (
        f"{'class':<{width}}  {'IoU':>7} {'recall':>7} {'precis.':>7} {'Dice':>7} {'pixels':>12}"
    )
    lines = [header, "-" * len(header)]
    for index, name in enumerate(names):
        cells = " ".join(f"{percent(scores[s][index]):>7}" for s in PER_CLASS_SCORES)
        lines.append(f"{name:<{width}}  {cells} {support[index]:>12}")
    means = " ".join(f"{percent(scores[MEAN_SCORES[s]]):>7}" for s in PER_CLASS_SCORES)
    lines += ["-" * len(header), f"{'mean':<{width}}  {means} {sum(support):>12}"]
    lines.append(
        f"pixel accuracy {percent(scores['pixel_accuracy'])} %, "
        f"frequency-weighted IoU {percent(scores['fwiou'])} %"
    )
    return "\n".join(lines)
