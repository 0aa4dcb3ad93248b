"""Augmentation: masks keep their value set, image and mask stay aligned, elastic strength."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import ndimage

from unetlab.data.transforms import (
    AugmentConfig,
    build_transform,
    elastic_alpha,
    pad_sample_to_multiple,
)

NO_PHOTOMETRIC = {"brightness": 0.0, "contrast": 0.0}
EVERYTHING = AugmentConfig(
    vflip=True, rotate90=True, scale_range=(0.5, 1.5), elastic=1.0, elastic_std=6.0
)


def _blocky_mask(rng, shape=(40, 52), values=(0, 3, 7, 255), block=4) -> np.ndarray:
    """Blocks of a few values: any interpolation between them would create new values."""
    cells = (shape[0] // block + 1, shape[1] // block + 1)
    coarse = rng.choice(np.array(values, np.uint8), size=cells)
    return np.kron(coarse, np.ones((block, block), np.uint8))[: shape[0], : shape[1]]


@pytest.mark.parametrize("patch", [32, 64, None])  # 64 is larger than the image: padding
def test_masks_never_gain_values(rng, patch):
    transform = build_transform(EVERYTHING, patch, train=True)
    mask = _blocky_mask(rng)
    image = rng.integers(0, 256, (*mask.shape, 3), dtype=np.uint8)
    allowed = set(np.unique(mask).tolist()) | {255}  # 255 may come from padding
    for seed in range(25):
        transform.set_random_seed(seed)
        out = transform(image=image, mask=mask)
        assert set(np.unique(out["mask"]).tolist()) <= allowed
        if patch is not None:
            assert out["image"].shape[:2] == out["mask"].shape == (patch, patch)


def test_flips_rotations_and_crops_keep_image_and_mask_aligned(rng):
    config = AugmentConfig(vflip=True, rotate90=True, scale_range=(1, 1), **NO_PHOTOMETRIC)
    transform = build_transform(config, 24, train=True)
    mask = _blocky_mask(rng, (30, 30), values=(0, 1, 2, 3))
    image = (mask * 60)[:, :, None]  # an image equal to its own mask
    for seed in range(20):
        transform.set_random_seed(seed)
        out = transform(image=image, mask=mask)
        np.testing.assert_array_equal(out["image"][:, :, 0], out["mask"] * 60)


def test_scale_and_elastic_move_image_and_mask_together(rng):
    """The image is interpolated, the mask is not, so they may differ right at class edges;
    3 px away from any edge of the mask (and of the patch) the image must show the mask's
    class. A misaligned warp, or one applied to only one of them, fails this."""
    config = EVERYTHING.model_copy(update=NO_PHOTOMETRIC)
    transform = build_transform(config, 48, train=True)
    checked = []
    for seed in range(20):
        mask = _blocky_mask(rng, (96, 96), values=(0, 1, 2, 3), block=16)
        transform.set_random_seed(seed)
        out = transform(image=(mask * 60)[:, :, None], mask=mask)
        moved = out["mask"]
        inner = ndimage.maximum_filter(moved, 7) == ndimage.minimum_filter(moved, 7)
        inner[:3], inner[-3:], inner[:, :3], inner[:, -3:] = False, False, False, False
        inner &= moved != 255
        checked.append(inner.mean())
        np.testing.assert_array_equal(np.rint(out["image"][:, :, 0] / 60.0)[inner], moved[inner])
    assert np.mean(checked) > 0.1  # the check saw enough pixels to mean something


def test_padding_reflects_the_image_and_ignores_the_mask(rng):
    config = AugmentConfig(hflip=False, scale_range=(1, 1), **NO_PHOTOMETRIC)
    transform = build_transform(config, (12, 10), train=True)
    image = rng.integers(0, 256, (8, 10, 1), dtype=np.uint8)
    mask = np.zeros((8, 10), np.uint8)
    out = transform(image=image, mask=mask)
    np.testing.assert_array_equal(out["image"][:8], image)
    np.testing.assert_array_equal(out["image"][8:], image[6:2:-1])  # reflected, edge excluded
    assert (out["mask"][8:] == 255).all() and (out["mask"][:8] == 0).all()


def test_pad_sample_to_multiple_for_validation_of_odd_sizes(rng):
    image = rng.integers(0, 256, (13, 21, 3), dtype=np.uint8)
    mask = rng.integers(0, 3, (13, 21), dtype=np.uint8)
    weight = rng.random((13, 21), dtype=np.float32)
    out = pad_sample_to_multiple(image, mask, 8, weight)
    assert out["image"].shape == (16, 24, 3) and out["mask"].shape == (16, 24)
    np.testing.assert_array_equal(out["image"][:13, :21], image)
    np.testing.assert_array_equal(out["mask"][:13, :21], mask)
    assert (out["mask"][13:] == 255).all() and (out["mask"][:, 21:] == 255).all()
    assert (out["weight"][13:] == 0).all() and np.array_equal(out["weight"][:13, :21], weight)
    same = build_transform(None, None, train=False, size_multiple=8)(image=image, mask=mask)
    np.testing.assert_array_equal(same["image"], out["image"])


def test_eval_transform_changes_nothing(rng):
    image = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    mask = rng.integers(0, 3, (9, 7), dtype=np.uint8)
    out = build_transform(EVERYTHING, 4, train=False)(image=image, mask=mask)
    np.testing.assert_array_equal(out["image"], image)
    np.testing.assert_array_equal(out["mask"], mask)


def test_elastic_displacement_has_the_configured_std():
    """Warp a coordinate image and measure how far pixels moved (independent of the formula):
    over 8 warps the per-axis displacement std is the configured 10 px within 10%."""
    size = 160
    config = AugmentConfig(
        hflip=False, scale_range=(1, 1), elastic=1.0, elastic_std=10.0, elastic_sigma=8.0,
        **NO_PHOTOMETRIC,
    )  # fmt: skip
    transform = build_transform(config, None, train=True)
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    coordinates = np.stack([cols, rows, np.zeros_like(rows)], axis=-1)
    stds = []
    for seed in range(8):
        transform.set_random_seed(seed)
        moved = transform(image=coordinates, mask=np.zeros((size, size), np.uint8))["image"]
        stds.append((moved - coordinates)[30:-30, 30:-30, :2].std(axis=(0, 1)).mean())
    assert np.mean(stds) == pytest.approx(10.0, rel=0.1)


def test_elastic_alpha_scales_smoothed_uniform_noise_to_the_std():
    """The alpha formula against a measurement: uniform noise on [-1, 1] smoothed by scipy's
    Gaussian of sigma, times alpha, has the requested std."""
    sigma = 8.0
    noise = np.random.default_rng(0).uniform(-1, 1, (4, 320, 320))
    smoothed = ndimage.gaussian_filter(noise, sigma=(0, sigma, sigma), mode="wrap")
    assert elastic_alpha(10.0, sigma) * smoothed.std() == pytest.approx(10.0, rel=0.05)


def test_augment_config_validation():
    assert AugmentConfig(elastic=True).elastic == 1.0 and AugmentConfig(elastic=False).elastic == 0
    with pytest.raises(ValidationError):
        AugmentConfig(scale_range=(1.5, 0.5))
    with pytest.raises(ValidationError):
        AugmentConfig(hflipp=True)  # typos are errors, not ignored
    with pytest.raises(ValueError, match="square patch"):
        build_transform(AugmentConfig(rotate90=True), (32, 48), train=True)
