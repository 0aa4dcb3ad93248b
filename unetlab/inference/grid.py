"""Whole image or tiles, mirror indices and tile weights, in numpy only.

Kept free of torch on purpose: the ONNX Runtime predictor (which must run without torch) shares
this code with the torch predictor, so both pad, tile and blend in exactly the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from unetlab.artifacts.geometry import Geometry

__all__ = [
    "DEFAULT_TILE",
    "Geometry",
    "blend_weights",
    "mirror_indices",
    "needs_tiles",
    "tile_starts",
]


DEFAULT_TILE = 512
"""Network input side above which an image is predicted in overlapping tiles, everywhere."""


def needs_tiles(geometry: Geometry, height: int, width: int, tile: int | None) -> bool:
    """The one rule that decides whole image or tiles: whether the network input for the whole
    image would exceed ``tile`` on a side (``tile`` None: never tile)."""
    if tile is None:
        return False
    return max(geometry.input_size(geometry.output_size(s)) for s in (height, width)) > tile


def mirror_indices(start: int, stop: int, length: int) -> np.ndarray:
    """Indices into ``range(length)`` for positions ``start..stop-1`` mirrored at the borders.

    Mirroring is ``reflect`` (the edge pixel is not repeated), as in the U-Net paper's
    overlap-tile strategy, and repeats as often as needed so any amount of padding works.
    A 1-pixel side cannot be reflected; it is replicated instead.
    """
    positions = np.arange(start, stop, dtype=np.int64)
    if length == 1:
        return np.zeros_like(positions)
    period = 2 * (length - 1)
    positions = np.mod(positions, period)
    return np.where(positions < length, positions, period - positions)


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets of tiles of side ``tile`` stepping by ``stride`` that cover ``range(length)``.

    The last tile is aligned with the end so no tile reaches past the image (the mirror padding
    is only needed when the image is smaller than one tile, then the single start is 0).
    """
    if tile <= 0 or stride <= 0:
        raise ValueError(f"tile ({tile}) and stride ({stride}) must be positive")
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return sorted(set(starts))


def blend_weights(size: Sequence[int], mode: str = "gaussian", sigma_scale: float = 0.125):
    """Per-pixel weight of an output tile when overlapping tiles are averaged.

    ``gaussian``: a separable Gaussian with sigma = side * ``sigma_scale`` (nnU-Net's importance
    map), so tile centres, which saw the most context, dominate and seams vanish; the minimum is
    clipped to a small positive value so every pixel keeps a defined weight. ``linear``: a tent
    falling towards the edges. ``constant``: a plain average.
    """
    axes = []
    for side in size:
        position = np.arange(side, dtype=np.float64) - (side - 1) / 2
        if mode == "gaussian":
            sigma = max(side * sigma_scale, 1e-6)
            axis = np.exp(-0.5 * (position / sigma) ** 2)
        elif mode == "linear":
            axis = 1.0 - np.abs(position) / (side / 2 + 1)
        elif mode == "constant":
            axis = np.ones(side)
        else:
            raise ValueError(f"unknown tile weights {mode!r}: use gaussian, linear or constant")
        axes.append(axis)
    weights = np.multiply.outer(axes[0], axes[1])
    weights /= weights.max()
    return np.maximum(weights, 1e-3).astype(np.float32)
