"""``per_image_scores``: one image's scores against hand-computed values and scikit-image."""

from __future__ import annotations

import math

import numpy as np
import pytest

from unetlab.metrics import per_image_scores
from unetlab.metrics.per_image import worst_first_key


def test_three_classes_by_hand() -> None:
    truth = np.array(
        [
            [0, 0, 1, 1],
            [0, 0, 1, 1],
            [2, 2, 255, 255],
            [2, 2, 0, 0],
        ]
    )
    prediction = np.array(
        [
            [0, 1, 1, 1],
            [0, 0, 1, 0],
            [2, 0, 1, 2],  # the last two are ignored in the truth
            [2, 2, 0, 0],
        ]
    )
    scores = per_image_scores(prediction, truth, num_classes=3)
    # class 0: truth 6 px, predicted 6 (ignored ones not counted: 0,0,0,0 + 1,1 ... see below)
    # scored pixels: 14; truth 0 at (0,0),(0,1),(1,0),(1,1),(3,2),(3,3): predicted 0,1,0,0,0,0
    # truth 1 at (0,2),(0,3),(1,2),(1,3): predicted 1,1,1,0
    # truth 2 at (2,0),(2,1),(3,0),(3,1): predicted 2,0,2,2
    # class 0: tp 5, truth 6, predicted 5 + 1 (from class 1) + 1 (from class 2) = 7
    # class 1: tp 3, truth 4, predicted 3 + 1 = 4; class 2: tp 3, truth 4, predicted 3
    iou = [5 / (6 + 7 - 5), 3 / (4 + 4 - 3), 3 / (4 + 3 - 3)]
    dice = [2 * 5 / 13, 2 * 3 / 8, 2 * 3 / 7]
    assert scores["pixels"] == 14
    assert scores["support"] == [6, 4, 4]
    np.testing.assert_allclose(scores["iou"], iou)
    np.testing.assert_allclose(scores["dice"], dice)
    assert scores["miou"] == pytest.approx(np.mean(iou))
    assert scores["mean_dice"] == pytest.approx(np.mean(dice))
    assert scores["pixel_accuracy"] == pytest.approx(11 / 14)
    assert scores["matrix"].tolist() == [[5, 1, 0], [1, 3, 0], [1, 0, 3]]
    assert "pixel_error" not in scores


def test_absent_class_is_undefined_and_left_out_of_the_means() -> None:
    truth = np.array([[0, 0], [1, 1]])
    scores = per_image_scores(truth.copy(), truth, num_classes=3)
    assert math.isnan(scores["iou"][2]) and math.isnan(scores["dice"][2])
    assert scores["miou"] == 1.0 and scores["mean_dice"] == 1.0


def test_binary_region_scores_match_scikit_image() -> None:
    skimage_metrics = pytest.importorskip("skimage.metrics")
    from scipy import ndimage

    rng = np.random.default_rng(3)
    truth = (rng.random((24, 24)) < 0.3).astype(np.uint8)  # class 1 = boundary
    prediction = truth.copy()
    prediction[rng.random((24, 24)) < 0.1] ^= 1
    truth[:2, :] = 255  # ignored rows: not scored, in the pixel error nor the Rand error
    scores = per_image_scores(prediction, truth, num_classes=2, boundary_class=1)

    kept = truth != 255
    assert scores["pixel_error"] == pytest.approx(np.mean(prediction[kept] != truth[kept]))
    # reference: regions = 4-connected components outside the boundary; ignored = boundary
    truth_regions, _ = ndimage.label(np.where(kept, truth, 1) != 1)
    predicted_regions, _ = ndimage.label(prediction != 1)
    expected, _, _ = skimage_metrics.adapted_rand_error(truth_regions, predicted_regions)
    assert scores["adapted_rand_error"] == pytest.approx(expected)


def test_worst_first_puts_undefined_last() -> None:
    rows = [{"miou": 0.5}, {"miou": math.nan}, {"miou": 0.1}, {"miou": None}, {"miou": 0.9}]
    ordered = [row["miou"] for row in sorted(rows, key=worst_first_key)]
    assert ordered[:3] == [0.1, 0.5, 0.9]
    assert ordered[3] is None or math.isnan(ordered[3])
