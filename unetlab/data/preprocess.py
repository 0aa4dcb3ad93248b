"""Image -> network input, the one definition shared by training, prediction and export.

A network sees ``(pixel / max_value - mean) / std`` per channel, where ``max_value`` is 255 for
8-bit and 65535 for 16-bit images. ``mean`` and ``std`` are stored in every checkpoint (and in
ONNX metadata), so predict and export never need them as flags.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported when used: model cards and the ONNX path run without it
    import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Normalization:
    """Per-channel mean and std in units of the [0, 1] intensity range."""

    mean: tuple[float, ...] = field(default=IMAGENET_MEAN)
    std: tuple[float, ...] = field(default=IMAGENET_STD)

    @classmethod
    def default_for(cls, in_channels: int) -> Normalization:
        """ImageNet statistics for RGB (what pretrained encoders expect), 0.5/0.5 otherwise."""
        if in_channels == 3:
            return cls(IMAGENET_MEAN, IMAGENET_STD)
        return cls((0.5,) * in_channels, (0.5,) * in_channels)

    @classmethod
    def from_dict(cls, values: dict) -> Normalization:
        return cls(tuple(float(v) for v in values["mean"]), tuple(float(v) for v in values["std"]))

    def to_dict(self) -> dict:
        return {k: list(v) for k, v in asdict(self).items()}


def max_value(dtype: np.dtype) -> float:
    """The full-scale value of an image dtype (255 for uint8, 65535 for uint16, 1 for float)."""
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    return 1.0


def image_to_tensor(image: np.ndarray, norm: Normalization) -> torch.Tensor:
    """HxW or HxWxC image (uint8, uint16 or float in [0, 1]) -> normalised float CxHxW tensor."""
    import torch

    array = image if image.ndim == 3 else image[:, :, None]
    x = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float()
    x = x / max_value(image.dtype)
    mean = torch.tensor(norm.mean, dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(norm.std, dtype=torch.float32).view(-1, 1, 1)
    return (x - mean) / std
