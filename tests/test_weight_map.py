"""The U-Net weight map against a brute-force implementation and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import shared_dataset
from PIL import Image
from scipy import ndimage

from unetlab.errors import UnetlabError
from unetlab.losses import build_loss, unet_weight_map

IGNORE = 255


def brute_force_weight_map(mask, objects, w0, sigma, class_balance=True):
    """w(x) = w_c(x) + w0 exp(-(d1 + d2)^2 / (2 sigma^2)) by loops over pixels and objects.

    ``objects`` is a list of boolean masks, one per object, given by the test. The border term
    applies to kept pixels outside every object; ignored pixels get 0.
    """
    kept = mask != IGNORE
    counts = {int(c): int(np.sum(mask == c)) for c in np.unique(mask[kept])}
    most = max(counts.values())
    in_object = np.any(objects, axis=0)
    object_pixels = [np.argwhere(obj).astype(float) for obj in objects]
    out = np.zeros(mask.shape)
    for y in range(mask.shape[0]):
        for x in range(mask.shape[1]):
            if not kept[y, x]:
                continue
            value = most / counts[int(mask[y, x])] if class_balance else 1.0
            if len(objects) >= 2 and not in_object[y, x]:
                # distance to every pixel of every object, the two smallest per-object minima
                nearest = sorted(np.hypot(p[:, 0] - y, p[:, 1] - x).min() for p in object_pixels)
                value += w0 * math.exp(-((nearest[0] + nearest[1]) ** 2) / (2 * sigma**2))
            out[y, x] = value
    return out


def rect(shape, rows, cols):
    region = np.zeros(shape, dtype=bool)
    region[rows[0] : rows[1] + 1, cols[0] : cols[1] + 1] = True
    return region


def disk(shape, centre, radius):
    yy, xx = np.indices(shape)
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


SHAPE = (20, 24)
# Four objects: A and B (class 1) with a 1-pixel gap, C (class 2) touching both from below,
# D (class 1) a disk one pixel right of C. Same-class objects never touch, so each is its own
# connected component.
OBJECTS = [
    (1, rect(SHAPE, (2, 8), (2, 10))),
    (1, rect(SHAPE, (2, 8), (12, 20))),
    (2, rect(SHAPE, (9, 15), (4, 14))),
    (1, disk(SHAPE, (16, 19), 3)),
]


def paint(count, with_ignore=False):
    mask = np.zeros(SHAPE, dtype=np.uint8)
    for cls, region in OBJECTS[:count]:
        mask[region] = cls
    if with_ignore:
        mask[19, 0:4] = IGNORE
        mask[0, 20:24] = IGNORE
    return mask, [region for _, region in OBJECTS[:count]]


@pytest.mark.parametrize("count", [2, 3, 4])
@pytest.mark.parametrize(("w0", "sigma"), [(10.0, 5.0), (3.0, 2.0)])
def test_matches_brute_force(count, w0, sigma):
    mask, objects = paint(count, with_ignore=count == 4)
    expected = brute_force_weight_map(mask, objects, w0, sigma)
    result = unet_weight_map(mask, w0=w0, sigma=sigma)
    assert result.dtype == np.float32 and result.shape == SHAPE
    np.testing.assert_allclose(result, expected, rtol=1e-6, atol=w0 * 2e-6)
    if count == 4:
        assert np.all(result[mask == IGNORE] == 0)


def test_without_class_balance_the_base_weight_is_one():
    mask, objects = paint(3)
    expected = brute_force_weight_map(mask, objects, 10.0, 5.0, class_balance=False)
    result = unet_weight_map(mask, class_balance=False)
    np.testing.assert_allclose(result, expected, rtol=1e-6, atol=2e-5)


@pytest.mark.parametrize(
    ("gap", "term"),
    [
        # pixels in a gap of g columns between two long bars: d1 + d2 = g + 1, so the border
        # term is 10 exp(-(g + 1)^2 / 50)
        (1, 9.231163463866357),  # 10 exp(-4 / 50)
        (3, 7.26149037073691),  # 10 exp(-16 / 50)
        (6, 3.7531109885139955),  # 10 exp(-49 / 50)
    ],
)
def test_border_term_in_the_gap_between_two_bars(gap, term):
    mask = np.zeros(SHAPE, dtype=np.uint8)
    mask[2:18, 4:9] = 1
    mask[2:18, 9 + gap : 9 + gap + 5] = 1
    weights = unet_weight_map(mask, w0=10.0, sigma=5.0, class_balance=False)
    gap_pixels = weights[2:18, 9 : 9 + gap]
    np.testing.assert_allclose(gap_pixels, 1.0 + term, rtol=1e-6)
    assert weights.max() == pytest.approx(1.0 + term, rel=1e-6)  # the gap is where it peaks
    assert np.all(weights[mask == 1] == 1.0)  # object pixels get no border term


def test_fewer_than_two_objects_means_class_balance_only():
    mask = np.zeros(SHAPE, dtype=np.uint8)
    mask[5:10, 5:13] = 1  # 40 pixels of class 1, 440 of class 0
    weights = unet_weight_map(mask)
    assert np.all(weights[mask == 0] == 1.0)
    assert np.all(weights[mask == 1] == pytest.approx(440 / 40))


def test_object_classes_choose_what_counts_as_an_object():
    # A 1-pixel membrane (class 1) between two cells (class 0), as in ISBI 2012.
    mask = np.zeros(SHAPE, dtype=np.uint8)
    mask[:, 11] = 1
    # default objects = classes other than 0: one membrane object -> no border term
    assert np.all(unet_weight_map(mask, class_balance=False) == 1.0)
    # cells as objects: the membrane pixels are 1 px from both cells, d1 + d2 = 2
    weights = unet_weight_map(mask, object_classes=(0,), class_balance=False)
    np.testing.assert_allclose(weights[:, 11], 1.0 + 10 * math.exp(-4 / 50), rtol=1e-6)
    assert np.all(weights[mask == 0] == 1.0)


def test_bad_masks_are_refused():
    with pytest.raises(UnetlabError, match="2-D"):
        unet_weight_map(np.zeros((2, 4, 4), dtype=np.uint8))
    with pytest.raises(UnetlabError, match="sigma"):
        unet_weight_map(np.zeros((4, 4), dtype=np.uint8), sigma=0)


def test_isbi_mask_matches_brute_force_on_a_crop():
    """(Its speed, under 5 s per 512x512 mask, is measured by benchmarks/weight_map.py.)"""
    mask = np.array(Image.open(shared_dataset("isbi2012") / "masks" / "00.png"))
    weights = unet_weight_map(mask, object_classes=(0,))
    assert weights.shape == mask.shape
    # cells (class 0) are the objects; on a crop, the crop's connected cells
    crop = mask[200:248, 300:348]
    cells, count = ndimage.label(crop == 0)
    assert count >= 3
    objects = [cells == index for index in range(1, count + 1)]
    expected = brute_force_weight_map(crop, objects, 10.0, 5.0)
    np.testing.assert_allclose(unet_weight_map(crop, object_classes=(0,)), expected, atol=2e-5)


def test_weighted_ce_with_the_map():
    mask, _ = paint(4, with_ignore=True)
    weight = torch.from_numpy(unet_weight_map(mask))[None]
    target = torch.from_numpy(mask.astype(np.int64))[None]
    logits = torch.randn(1, 3, *SHAPE)
    per_pixel = F.cross_entropy(logits, target, ignore_index=IGNORE, reduction="none")
    expected = (per_pixel * weight).sum() / weight.sum()
    loss = build_loss("weighted_ce", 3)(logits, target, weight)
    assert torch.allclose(loss, expected, atol=1e-6)
