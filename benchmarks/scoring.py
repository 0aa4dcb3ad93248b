"""One scorer for every quality record: a labelling function applied to a split, scored alike.

``score_split(root, split, predict)`` runs ``predict(image) -> labels`` on every image of the
split (unetlab's readers: VOC or plain layout, palette masks as indices) and scores the labels
with unetlab's confusion matrix and EM metrics, both tested against independent references
(a brute-force per-pixel loop and scikit-image). The plain baseline (``baseline.py``) and the
unetlab runs of ``quality.py`` go through this one function, so their numbers are comparable by
construction.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

BOUNDARY_WORDS = ("membrane", "boundary", "border", "edge", "contour")


def split_samples(root: str | Path, split: str) -> list[tuple[str, Path, Path]]:
    """(id, image path, mask path) of every sample of ``split``."""
    from unetlab.data.layouts import dataset_info

    info = dataset_info(root)
    samples = []
    for sample_id in info.ids(split):
        image, mask = info.image_path(sample_id), info.mask_path(sample_id)
        if image is None or mask is None:
            raise FileNotFoundError(f"{root}: split {split!r} names {sample_id!r} without files")
        samples.append((sample_id, image, mask))
    return samples


def class_names(root: str | Path, num_classes: int) -> list[str]:
    from unetlab.data.layouts import dataset_info

    names = dataset_info(root).class_names
    return list(names) if names else [f"class {i}" for i in range(num_classes)]


def score_split(
    root: str | Path,
    split: str,
    predict: Callable[[np.ndarray], np.ndarray],
    num_classes: int,
) -> dict[str, Any]:
    """Confusion-matrix scores of ``predict`` on ``split``; for two classes also the foreground
    Dice and, when class 1 is a boundary (membrane), pixel error and adapted Rand error averaged
    over images as in ``unetlab evaluate``."""
    from unetlab.data.io import read_image, read_mask
    from unetlab.metrics import ConfusionMatrix, membrane_rand_error, pixel_error

    matrix = ConfusionMatrix(num_classes)
    names = class_names(root, num_classes)
    boundary = num_classes == 2 and any(word in names[1].lower() for word in BOUNDARY_WORDS)
    per_image: list[dict[str, Any]] = []
    for sample_id, image_path, mask_path in split_samples(root, split):
        truth = read_mask(mask_path)
        labels = np.asarray(predict(read_image(image_path)))
        if labels.shape != truth.shape:
            raise ValueError(f"{sample_id}: labels {labels.shape} vs mask {truth.shape}")
        matrix.update(labels.astype(np.int64), truth.astype(np.int64))
        row: dict[str, Any] = {"id": sample_id}
        if num_classes == 2:
            row["pixel_error"] = pixel_error(labels, truth)
            if boundary:
                error, precision, recall = membrane_rand_error(labels, truth)
                row.update(adapted_rand_error=error, rand_precision=precision, rand_recall=recall)
        per_image.append(row)
    scores = matrix.compute()
    result: dict[str, Any] = {
        "split": split,
        "num_images": len(per_image),
        "miou": _float(scores["miou"]),
        "pixel_accuracy": _float(scores["pixel_accuracy"]),
        "mean_dice": _float(scores["mean_dice"]),
        "per_class": [
            {"name": name, "iou": _float(iou), "dice": _float(dice)}
            for name, iou, dice in zip(names, scores["iou"], scores["dice"], strict=True)
        ],
        "confusion_matrix": matrix.matrix.tolist(),
    }
    if num_classes == 2:
        result["foreground_iou"] = _float(scores["iou"][1])
        result["foreground_dice"] = _float(scores["dice"][1])
        for key in ("pixel_error", "adapted_rand_error", "rand_precision", "rand_recall"):
            values = [row[key] for row in per_image if key in row and not math.isnan(row[key])]
            if values:
                result[key] = float(np.mean(values))
    result["per_image"] = per_image
    return result


def _float(value: Any) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value
