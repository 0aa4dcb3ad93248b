"""Evaluation: a streaming confusion matrix and its scores, and the EM Rand scores.

``ConfusionMatrix(num_classes)`` counts pixels batch by batch (merge / all-reduce across
processes) and gives per-class IoU, recall (PA), precision, Dice and mIoU, mPA, mean Dice,
pixel accuracy, frequency-weighted IoU; ``per_image_scores`` gives them for one image (what
``unetlab serve`` ranks images by). ``unetlab.metrics.em`` has the pixel error and the
adapted Rand error of the ISBI/SNEMI membrane challenges.
"""

from unetlab.metrics.confusion import ConfusionMatrix
from unetlab.metrics.em import (
    adapted_rand_error,
    membrane_rand_error,
    membrane_to_regions,
    pixel_error,
)
from unetlab.metrics.per_image import per_image_scores
from unetlab.metrics.scores import scores_from_matrix

__all__ = [
    "ConfusionMatrix",
    "adapted_rand_error",
    "membrane_rand_error",
    "membrane_to_regions",
    "per_image_scores",
    "pixel_error",
    "scores_from_matrix",
]
