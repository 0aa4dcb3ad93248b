"""Overlap-tile prediction of images of any size in bounded memory.

The image is cut into overlapping output tiles; each tile's network input is read with mirror
padding at the image borders (the U-Net paper's overlap-tile strategy), so valid-padding U-Nets
get real context and same-padding ones see the same borders as a whole-image pass. Overlapping
logits are blended with a Gaussian (or linear / constant) weight. Tiles are processed in row
order and finished rows leave the working buffer at once ("row bands"), so the float buffer is
only a few tiles high whatever the image height; with ``output="labels"`` the result is one byte
per pixel.

The core is numpy-only (the network is a callable on numpy batches) so the torch-free ONNX
Runtime predictor uses exactly the same code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from unetlab.inference.grid import Geometry, blend_weights, mirror_indices, tile_starts
from unetlab.inference.labels import labels_from_logits
from unetlab.progress import Progress

BatchNetwork = Callable[[np.ndarray], np.ndarray]  # B x C x h x w float32 -> B x K x h' x w'
Prepare = Callable[[np.ndarray], np.ndarray]  # raw h x w x C tile -> C x h x w float32
OUTPUTS = ("logits", "labels")
EMIT_ROWS = 64  # finished rows normalised per step


class TileReader:
    """Reads mirror-padded network inputs from an image without padding the whole image.

    Holds the image as given (e.g. a 20000 x 20000 uint8 array) and converts only one tile at a
    time, so a huge image is never turned into a huge float array.
    """

    def __init__(self, image: np.ndarray, channels_last: bool, prepare: Prepare | None = None):
        if channels_last and image.ndim == 2:
            image = image[:, :, None]
        if image.ndim != 3:
            raise ValueError(f"expected a 3-D image array, got shape {image.shape}")
        self.image = image
        self.axes = (0, 1) if channels_last else (1, 2)
        self.height, self.width = (image.shape[a] for a in self.axes)
        self.channels_last = channels_last
        self.prepare = prepare

    def __call__(self, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
        """The ``C x h x w`` float32 input covering ``rows`` x ``cols`` (may reach outside)."""
        tile = _take(self.image, rows, self.height, self.axes[0])
        tile = _take(tile, cols, self.width, self.axes[1])
        if self.prepare is not None:
            return self.prepare(np.ascontiguousarray(tile))
        if self.channels_last:
            tile = tile.transpose(2, 0, 1)
        return np.ascontiguousarray(tile, dtype=np.float32)


def _take(array: np.ndarray, span: tuple[int, int], length: int, axis: int) -> np.ndarray:
    """Positions ``span`` along ``axis``, mirrored at the borders (a cheap slice when inside)."""
    start, stop = span
    if start >= 0 and stop <= length:
        index = [slice(None)] * array.ndim
        index[axis] = slice(start, stop)
        return array[tuple(index)]
    return np.take(array, mirror_indices(start, stop, length), axis=axis)


@dataclass(frozen=True)
class TileGrid:
    """Where the output tiles of one image go.

    ``tile``: output tile side per axis; ``extent``: the image side rounded up to a size the
    network can produce (the extra rows are mirrored image and are cropped away); ``starts``:
    tile origins per axis, multiples of the network's size multiple so pooling grids line up
    with a whole-image pass.
    """

    height: int
    width: int
    tile: tuple[int, int]
    extent: tuple[int, int]
    rows: tuple[int, ...]
    cols: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.rows) * len(self.cols)

    def origins(self) -> Iterator[tuple[int, int]]:
        """Tile origins in row order (what the row-band buffer relies on)."""
        for y in self.rows:
            for x in self.cols:
                yield y, x


def make_grid(
    height: int, width: int, geometry: Geometry, tile: int, overlap: float = 0.25
) -> TileGrid:
    """The tile grid for an image, for network input tiles of side about ``tile``.

    The output tile is the largest the network produces from at most ``tile`` input pixels
    (but at least one size multiple), and no larger than the image needs.

    ``overlap`` is the fraction of the output tile shared with each neighbour; the stride is
    rounded down to the network's size multiple (at least one multiple).
    """
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if height < 1 or width < 1:
        raise ValueError(f"cannot tile an empty image ({height} x {width})")
    # at least one size multiple per tile, so that aligned steps can cover the image
    full = max(geometry.output_size_within(tile), geometry.output_size(geometry.multiple))
    sides, extents, starts = [], [], []
    for length in (height, width):
        extent = geometry.output_size(length)
        side = min(full, extent)
        step = side - round(side * overlap)
        step = max(geometry.multiple, step - step % geometry.multiple)
        sides.append(side)
        extents.append(extent)
        starts.append(tuple(tile_starts(extent, side, step)))
    return TileGrid(
        height, width, (sides[0], sides[1]), (extents[0], extents[1]), starts[0], starts[1]
    )


def weights_of_tile(grid: TileGrid, y: int, x: int, base: np.ndarray, trim: int) -> np.ndarray:
    """Blend weight of the tile at ``(y, x)``: ``base`` with ``trim`` pixels zeroed on the sides
    that face another tile (never on image borders), where a same-padding network's output is
    spoiled by its zero padding."""
    if trim <= 0:
        return base
    weights = base.copy()
    tile_h, tile_w = grid.tile
    if y > 0:
        weights[:trim] = 0
    if y + tile_h < grid.extent[0]:
        weights[tile_h - trim :] = 0
    if x > 0:
        weights[:, :trim] = 0
    if x + tile_w < grid.extent[1]:
        weights[:, tile_w - trim :] = 0
    return weights


def predict_tiled(
    network: BatchNetwork,
    reader: TileReader,
    geometry: Geometry,
    *,
    tile: int = 512,
    overlap: float = 0.25,
    tile_weights: str = "gaussian",
    trim: int = 0,
    batch_size: int = 1,
    output: str = "logits",
    threshold: float | None = None,
    dtype: np.dtype | type = np.float32,
    progress: bool = False,
) -> np.ndarray:
    """Predict a whole image tile by tile.

    Returns ``K x H x W`` blended logits (in ``dtype``; float16 halves the result's memory) or,
    with ``output="labels"``, ``H x W`` class labels (the rule of
    :func:`~unetlab.inference.labels.labels_from_logits`) without ever holding the full logits.
    ``trim``: pixels of each tile side facing a neighbour that get no weight; use it (with
    ``overlap`` larger than twice it) for same-padding networks whose tile borders differ from a
    whole-image pass.
    """
    if output not in OUTPUTS:
        raise ValueError(f"unknown output {output!r}: use one of {OUTPUTS}")
    grid = make_grid(reader.height, reader.width, geometry, tile, overlap)
    tile_h, tile_w = grid.tile
    if trim > 0 and any(
        len(starts) > 1 and max(np.diff(starts)) > side - 2 * trim
        for starts, side in ((grid.rows, tile_h), (grid.cols, tile_w))
    ):
        raise ValueError(f"trim {trim} leaves gaps: use an overlap larger than twice the trim")
    base = blend_weights(grid.tile, tile_weights)
    origins = list(grid.origins())
    batches = [origins[i : i + batch_size] for i in range(0, len(origins), batch_size)]
    band = Band(grid, batches, output, threshold, dtype)
    offset = geometry.offset
    in_h, in_w = geometry.input_size(tile_h), geometry.input_size(tile_w)
    with Progress(grid.count, "tiles", "tile", enabled=progress, leave=False) as bar:
        for batch in batches:
            band.advance_to(batch[0][0])
            inputs = np.stack(
                [
                    reader((y - offset, y - offset + in_h), (x - offset, x - offset + in_w))
                    for y, x in batch
                ]
            )
            logits = np.asarray(network(inputs), dtype=np.float32)
            if logits.shape[-2:] != grid.tile:
                raise RuntimeError(
                    f"the network returned {logits.shape[-2:]} for tile input {(in_h, in_w)}, "
                    f"expected {grid.tile} from its geometry {geometry}"
                )
            for (y, x), tile_logits in zip(batch, logits, strict=True):
                band.add(y, x, tile_logits, weights_of_tile(grid, y, x, base, trim))
            bar.update(len(batch))
    return band.finish()


class Band:
    """The float working buffer: rows ``[top, top + height)`` of the blended image.

    Rows above the next tile's origin can receive no more tiles; they are normalised by their
    weight sum and written to the result, and the buffer slides down.
    """

    def __init__(
        self, grid: TileGrid, batches, output: str, threshold: float | None, dtype
    ) -> None:
        self.grid = grid
        tile_h = grid.tile[0]
        self.height = max(batch[-1][0] + tile_h - batch[0][0] for batch in batches)
        self.top = 0
        self.sums: np.ndarray | None = None  # K x band x width, allocated with the first tile
        self.weights = np.zeros((self.height, grid.extent[1]), np.float32)
        self.output = output
        self.threshold = threshold
        self.dtype = dtype
        self.result: np.ndarray | None = None

    def add(self, y: int, x: int, logits: np.ndarray, weights: np.ndarray) -> None:
        if self.sums is None:
            self.sums = np.zeros((len(logits), self.height, self.grid.extent[1]), np.float32)
            self.result = self._allocate(len(logits))
        rows = slice(y - self.top, y - self.top + logits.shape[1])
        cols = slice(x, x + logits.shape[2])
        self.sums[:, rows, cols] += logits * weights
        self.weights[rows, cols] += weights

    def advance_to(self, row: int) -> None:
        """Finish rows ``[top, row)`` and slide the buffer so that it starts at ``row``."""
        done = row - self.top
        if done <= 0 or self.sums is None:
            return
        self._emit(min(done, self.grid.height - self.top))
        keep = max(self.height - done, 0)
        # one 2-D plane at a time: the source and target rows then do not overlap in memory,
        # so numpy needs no temporary copy of the buffer
        for plane in (*self.sums, self.weights):
            plane[:keep] = plane[self.height - keep :]
            plane[keep:] = 0
        self.top = row

    def finish(self) -> np.ndarray:
        self._emit(self.grid.height - self.top)
        assert self.result is not None, "no tile was added"
        return self.result

    def _allocate(self, channels: int) -> np.ndarray:
        size = (self.grid.height, self.grid.width)
        if self.output == "labels":
            return np.zeros(size, np.uint8 if channels <= 256 else np.int32)
        return np.zeros((channels, *size), self.dtype)

    def _emit(self, count: int) -> None:
        """Normalise the first ``count`` buffer rows and write them to the result, a few rows
        at a time so the temporaries stay small for very wide images."""
        assert self.sums is not None and self.result is not None
        width = self.grid.width
        for start in range(0, max(count, 0), EMIT_ROWS):
            stop = min(start + EMIT_ROWS, count)
            logits = self.sums[:, start:stop, :width] / self.weights[start:stop, :width]
            rows = slice(self.top + start, self.top + stop)
            if self.output == "logits":
                self.result[:, rows] = logits
            else:
                self.result[rows] = labels_from_logits(logits, self.threshold)


def predict_tiled_tensor(
    network,
    images,
    *,
    geometry: Geometry,
    tile: int,
    overlap: float = 0.25,
    tile_weights: str = "gaussian",
    trim: int = 0,
    batch_size: int = 1,
    progress: bool = False,
):
    """Tiled logits ``N x K x H x W`` for normalised torch images ``N x C x H x W``.

    Tiles run on the images' device; the blending buffer lives on the CPU.
    """
    import torch

    device = images.device

    def run(batch: np.ndarray) -> np.ndarray:
        return network(torch.from_numpy(batch).to(device)).float().cpu().numpy()

    results = [
        predict_tiled(
            run,
            TileReader(image.cpu().numpy(), channels_last=False),
            geometry,
            tile=tile,
            overlap=overlap,
            tile_weights=tile_weights,
            trim=trim,
            batch_size=batch_size,
            progress=progress,
        )
        for image in images
    ]
    return torch.from_numpy(np.stack(results)).to(device)
