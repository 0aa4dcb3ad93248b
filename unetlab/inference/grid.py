"""Size arithmetic, mirror indices and tile grids, in numpy only.

Kept free of torch on purpose: the ONNX Runtime predictor (which must run without torch) shares
this code with the torch predictor, so both pad, tile and blend in exactly the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Geometry:
    """Which input sides a network accepts and how its output lines up with its input.

    A same-padding network maps an input side ``n`` (a multiple of ``multiple``) to an output
    side ``n``. A valid-padding U-Net maps an input side ``o + margin`` to an output side ``o``,
    where ``o`` must be ``out_residue`` modulo ``multiple`` and at least ``min_output``; output
    pixel ``j`` then sees input pixel ``j + margin // 2`` at its centre.
    """

    multiple: int = 1
    margin: int = 0
    out_residue: int = 0
    min_output: int = 1

    def __post_init__(self) -> None:
        if self.multiple < 1 or self.margin < 0 or self.margin % 2 or self.min_output < 1:
            raise ValueError(f"inconsistent network geometry {self}")

    @property
    def offset(self) -> int:
        """Input pixels lost on each side: output pixel ``j`` is centred on input ``j + offset``."""
        return self.margin // 2

    def output_size(self, needed: int) -> int:
        """The smallest output side the network can produce that is at least ``needed``."""
        size = max(int(needed), self.min_output)
        return size + (self.out_residue - size) % self.multiple

    def output_size_within(self, input_side: int) -> int:
        """The largest output side whose input side is at most ``input_side`` (or the minimum)."""
        size = int(input_side) - self.margin
        size -= (size - self.out_residue) % self.multiple
        return max(size, self.output_size(1))

    def input_size(self, output_side: int) -> int:
        """The input side that yields ``output_side`` (which must be a valid output side)."""
        return int(output_side) + self.margin

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Geometry:
        keys = ("multiple", "margin", "out_residue", "min_output")
        return cls(**{key: int(values[key]) for key in keys})


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
            raise ValueError(f"unknown blend mode {mode!r}: use gaussian, linear or constant")
        axes.append(axis)
    weights = np.multiply.outer(axes[0], axes[1])
    weights /= weights.max()
    return np.maximum(weights, 1e-3).astype(np.float32)
