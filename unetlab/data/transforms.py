"""Augmentation of image, mask and weight map together, on albumentations.

Why albumentations: one call transforms the image and all its masks with the same random
parameters (no hand-kept alignment), its kernels are OpenCV's (fast on CPU, where the loader
competes with training for cores), it is maintained and tested, and every geometric transform
has a separate mask interpolation, which is set to nearest here ALWAYS, so a mask never gains a
value it did not have (no invented classes, no blend of a class and 'ignore').

The pipeline for training (each step only when enabled in :class:`AugmentConfig`):

1. random scale (``scale_range``), then reflect-pad to the patch if needed (mask: 255 = ignore)
   and a random crop of ``patch_size``;
2. horizontal / vertical flips, 90-degree rotations (square patches only);
3. elastic deformation, the U-Net paper's main augmentation. The paper draws random
   displacements on a coarse 3x3 grid (Gaussian, 10 px std) and interpolates them bicubically.
   We use albumentations' ``ElasticTransform`` (Simard et al.): a per-pixel uniform random field
   smoothed by a Gaussian of ``elastic_sigma`` px, scaled so the displacement has a standard
   deviation of about ``elastic_std`` px per axis (alpha = std * sigma * 2 * sqrt(3 * pi), the
   variance of smoothed white noise), bicubic image interpolation, reflected borders. The
   smoothing width plays the role of the paper's grid spacing;
4. brightness and contrast (image only).

The weight map rides along as an extra mask target, so it is warped exactly like the mask.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from unetlab import IGNORE_INDEX

PatchSize = int | tuple[int, int]


class AugmentConfig(BaseModel):
    """Training augmentation options (embedded in the run configuration as ``data.augment``)."""

    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, use_attribute_docstrings=True
    )

    hflip: bool = True
    """Random horizontal flips."""
    vflip: bool = False
    """Random vertical flips: for images without an "up" (microscopy, aerial)."""
    rotate90: bool = False
    """Random 90-degree rotations (likewise; needs a square patch)."""
    scale_range: tuple[float, float] = Field(default=(0.75, 1.25))
    """Random zoom factor before cropping; ``[1, 1]``: off."""
    elastic: float = Field(default=0.0, ge=0.0, le=1.0)
    """Probability of an elastic deformation per sample (true = 1, false = 0)."""
    elastic_std: float = Field(default=10.0, ge=0.0)
    """Elastic displacement std in pixels (the U-Net paper: 10)."""
    elastic_sigma: float = Field(default=10.0, gt=0.0)
    """Smoothness of the elastic displacement field, in pixels."""
    brightness: float = Field(default=0.2, ge=0.0, le=1.0)
    """Largest brightness shift, as a fraction of full scale."""
    contrast: float = Field(default=0.2, ge=0.0, le=1.0)
    """Largest contrast change, as a fraction."""

    @field_validator("elastic", mode="before")
    @classmethod
    def _bool_is_probability(cls, value: Any) -> Any:
        return float(value) if isinstance(value, bool) else value

    @model_validator(mode="after")
    def _scale_range_ordered(self) -> AugmentConfig:
        low, high = self.scale_range
        if not 0 < low <= high:
            raise ValueError(f"scale_range must be 0 < low <= high, got {self.scale_range}")
        return self


def build_transform(
    config: AugmentConfig | dict | None,
    patch_size: PatchSize | None,
    train: bool,
    size_multiple: int | None = None,
) -> Any:
    """An albumentations ``Compose`` called as ``t(image=, mask=[, weight=])``.

    ``train=False`` gives no augmentation, only (with ``size_multiple``) padding to a multiple
    of it, as for validation images of any size. ``patch_size`` is the training crop (an int or
    ``(height, width)``; None keeps the whole image).
    """
    import albumentations as A

    config = config if isinstance(config, AugmentConfig) else AugmentConfig(**(config or {}))
    steps: list[Any] = []
    if train:
        steps += _geometric_steps(config, _hw(patch_size))
        if config.elastic > 0 and config.elastic_std > 0:
            steps.append(_elastic(config))
        if config.brightness > 0 or config.contrast > 0:
            steps.append(
                A.RandomBrightnessContrast(
                    brightness_limit=config.brightness, contrast_limit=config.contrast, p=1.0
                )
            )
    if size_multiple:
        steps.append(_pad(multiple=size_multiple))
    return A.Compose(steps, additional_targets={"weight": "mask"})


def pad_sample_to_multiple(
    image: np.ndarray, mask: np.ndarray, multiple: int, weight: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Pad bottom and right to multiples of ``multiple``: image reflected, mask 255, weight 0."""
    import albumentations as A

    targets = {"image": image, "mask": mask}
    if weight is not None:
        targets["weight"] = weight
    out = A.Compose([_pad(multiple=multiple)], additional_targets={"weight": "mask"})(**targets)
    if weight is not None:
        out["weight"] = np.where(out["mask"] == IGNORE_INDEX, np.float32(0), out["weight"])
    return out


def elastic_alpha(std: float, sigma: float) -> float:
    """ElasticTransform's alpha giving displacements of ``std`` px for a smoothing ``sigma``.

    Uniform noise on [-1, 1] has variance 1/3; a 2-D Gaussian blur of width sigma divides the
    variance of white noise by 4 * pi * sigma^2.
    """
    return std * sigma * 2.0 * math.sqrt(3.0 * math.pi)


def _hw(patch_size: PatchSize | None) -> tuple[int, int] | None:
    if patch_size is None:
        return None
    if isinstance(patch_size, int):
        return patch_size, patch_size
    height, width = (int(v) for v in patch_size)
    return height, width


def _geometric_steps(config: AugmentConfig, patch: tuple[int, int] | None) -> list[Any]:
    import albumentations as A

    steps: list[Any] = []
    low, high = config.scale_range
    if (low, high) != (1.0, 1.0):
        steps.append(
            A.RandomScale(
                scale_limit=(low - 1.0, high - 1.0),
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST_EXACT,  # INTER_NEAREST is off by 1/2 px
                p=1.0,
            )
        )
    if patch is not None:
        steps += [_pad(min_hw=patch), A.RandomCrop(height=patch[0], width=patch[1])]
    if config.hflip:
        steps.append(A.HorizontalFlip(p=0.5))
    if config.vflip:
        steps.append(A.VerticalFlip(p=0.5))
    if config.rotate90:
        if patch is not None and patch[0] != patch[1]:
            raise ValueError(
                f"rotate90 needs a square patch (a rotated {patch[0]}x{patch[1]} patch would not "
                "batch with the others); use a square patch_size or turn rotate90 off"
            )
        steps.append(A.RandomRotate90(p=1.0))
    return steps


def _elastic(config: AugmentConfig) -> Any:
    import albumentations as A

    return A.ElasticTransform(
        alpha=elastic_alpha(config.elastic_std, config.elastic_sigma),
        sigma=config.elastic_sigma,
        interpolation=cv2.INTER_CUBIC,
        mask_interpolation=cv2.INTER_NEAREST,
        noise_distribution="uniform",
        border_mode=cv2.BORDER_REFLECT_101,
        p=config.elastic,
    )


def _pad(min_hw: tuple[int, int] = (1, 1), multiple: int = 1) -> Any:
    """Pad bottom/right to at least ``min_hw`` and to multiples of ``multiple``.

    albumentations pads every target with one border mode; we need the image reflected (no
    artificial edge for the network to see) but the mask set to 255 (those pixels are not
    labelled), so the two get their own functions in a ``Lambda`` step.
    """
    import albumentations as A

    return A.Lambda(
        image=partial(pad_array, min_hw=min_hw, multiple=multiple, fill=None),
        mask=partial(pad_array, min_hw=min_hw, multiple=multiple, fill=IGNORE_INDEX),
        name="pad",
    )


def pad_array(
    array: np.ndarray,
    *,
    min_hw: tuple[int, int] = (1, 1),
    multiple: int = 1,
    fill: int | None = None,
    **_: Any,
) -> np.ndarray:
    """Pad the first two axes at the bottom/right: reflected (``fill=None``) or constant."""
    height, width = array.shape[:2]
    target_h = -(-max(height, min_hw[0]) // multiple) * multiple
    target_w = -(-max(width, min_hw[1]) // multiple) * multiple
    if (target_h, target_w) == (height, width):
        return array
    pads = [(0, target_h - height), (0, target_w - width)] + [(0, 0)] * (array.ndim - 2)
    if fill is None:
        return np.pad(array, pads, mode="reflect" if min(height, width) > 1 else "edge")
    return np.pad(array, pads, mode="constant", constant_values=fill)
