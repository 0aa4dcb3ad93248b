"""The working resolution: the scale at which a network sees its images (``data.working_scale``).

Photographs are often far larger than the structures that matter need: a horse 100 px wide
is still a horse at 50 px, and a 256 px crop at half scale sees four times more of the scene
for the same cost per step (nnU-Net resamples every case to one target spacing for the same
reason). Training reads each image and mask at ``working_scale``; prediction resizes its input
by the same factor and the network's scores back to the input's size, so that labels, metrics
and overlays are always at the size of the image the user gave.

numpy and OpenCV only (no torch): the ONNX Runtime predictor uses it too.
"""

from __future__ import annotations

import numpy as np

IDENTITY = 1.0


def working_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """``(height, width)`` at ``scale``, rounded, at least one pixel."""
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_image(image: np.ndarray, scale: float) -> np.ndarray:
    """An ``H x W (x C)`` image at ``scale``: area averaging when shrinking (no aliasing),
    bilinear when enlarging; the dtype is kept (uint8, uint16 or float32)."""
    if scale == IDENTITY:
        return image
    import cv2

    height, width = working_size(image.shape[0], image.shape[1], scale)
    method = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    source = np.ascontiguousarray(image)
    if source.dtype not in (np.uint8, np.uint16, np.float32):
        source = source.astype(np.float32)
    resized = cv2.resize(source, (width, height), interpolation=method)
    return resized.reshape(height, width, *image.shape[2:])


def resize_mask(mask: np.ndarray, scale: float) -> np.ndarray:
    """An ``H x W`` label mask at ``scale``: each pixel takes the label under its centre
    (labels are never averaged: 255 = ignore stays 255, no class appears between two)."""
    if scale == IDENTITY:
        return mask
    import cv2

    height, width = working_size(mask.shape[0], mask.shape[1], scale)
    return cv2.resize(
        np.ascontiguousarray(mask), (width, height), interpolation=cv2.INTER_NEAREST_EXACT
    )


def resize_scores(scores: np.ndarray, height: int, width: int) -> np.ndarray:
    """``K x h x w`` float32 logits or probabilities resized bilinearly to ``K x height x
    width`` (pixel centres aligned, as ``torch.nn.functional.interpolate(...,
    align_corners=False)``): the scores of a working-scale prediction at the input's size."""
    if scores.shape[1:] == (height, width):
        return scores
    import cv2

    planes = np.ascontiguousarray(np.moveaxis(np.asarray(scores, dtype=np.float32), 0, -1))
    chunks = [  # OpenCV's Python binding takes at most 128 channels at once
        cv2.resize(
            np.ascontiguousarray(planes[:, :, start : start + 128]),
            (width, height),
            interpolation=cv2.INTER_LINEAR,
        )
        for start in range(0, planes.shape[2], 128)
    ]
    resized = np.concatenate([c.reshape(height, width, -1) for c in chunks], axis=2)
    return np.ascontiguousarray(np.moveaxis(resized, -1, 0))
