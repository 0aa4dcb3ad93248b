"""Whole-image prediction shared by the torch and the ONNX Runtime predictors (numpy only).

A backend supplies two functions: ``prepare`` (a raw ``h x w x C`` image tile -> the ``C x h x w``
float32 network input) and ``network`` (a float32 batch -> logits). Everything else is here, once:
channel checks, padding to sizes the network accepts, batching same-sized images, automatic
tiling of large images, test-time augmentation, and the labels/probabilities decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unetlab.artifacts.card import ModelCard
from unetlab.data.resolution import resize_image, resize_scores
from unetlab.errors import UnetlabError
from unetlab.inference.grid import Geometry, needs_tiles
from unetlab.inference.labels import labels_from_logits, probabilities_from_logits
from unetlab.inference.postprocessing import PostProcessing
from unetlab.inference.tiling import BatchNetwork, Prepare, TileReader, make_grid, predict_tiled

Color = tuple[int, int, int]
TILE_WEIGHTS = ("gaussian", "linear", "constant")
"""How overlapping tiles are weighted where they meet (``unetlab.inference.grid.blend_weights``);
``blend`` means one thing only: colouring an overlay (``unetlab.inference.overlay.blend``)."""


@dataclass
class Prediction:
    """One image's result: ``labels`` (``H x W`` uint8 class indices) and, when asked for,
    ``probabilities`` (``max(K, 2) x H x W`` float32)."""

    labels: np.ndarray
    probabilities: np.ndarray | None = None


@dataclass
class PredictOptions:
    """How to predict. ``tile``: network input side above which an image is predicted in
    overlapping tiles (``overlap`` fraction, weighted by ``tile_weights``); ``tta``: False,
    "flips" or "flips+rot90"; ``threshold``: foreground probability of binary models (None:
    the model's, see :func:`unetlab.inference.labels.resolve_threshold`); ``batch_size``: images
    or tiles per forward pass (1 by default: on a CPU larger batches are not faster, and four
    512 px tiles of the classic 64-wide U-Net need about 2 GB of activations against 0.6 GB for
    one, see benchmarks/tiled_memory.py; raise it on a GPU); ``progress``: a progress bar for
    images of many tiles; ``postprocessing``: what is done to the labels after the labelling
    rule (:mod:`unetlab.inference.postprocessing`; class indices), none by default."""

    tile: int = 512
    overlap: float = 0.25
    tile_weights: str = "gaussian"
    tta: bool | str = False
    tta_space: str = "logits"
    threshold: float | None = None
    batch_size: int = 1
    progress: bool = True
    postprocessing: PostProcessing = field(default_factory=PostProcessing)

    def __post_init__(self) -> None:
        from unetlab.inference.tta import MODES, SPACES

        problems = [
            f"{name} {value!r} ({rule})"
            for name, value, ok, rule in [
                ("tile", self.tile, self.tile >= 1, "a positive number of pixels"),
                ("overlap", self.overlap, 0 <= self.overlap < 1, "in [0, 1)"),
                (
                    "threshold",
                    self.threshold,
                    self.threshold is None or 0 < self.threshold < 1,
                    "strictly in (0, 1)",
                ),
                ("batch_size", self.batch_size, self.batch_size >= 1, "at least 1"),
                (
                    "tile_weights",
                    self.tile_weights,
                    self.tile_weights in TILE_WEIGHTS,
                    f"one of {TILE_WEIGHTS}",
                ),
                ("tta", self.tta, self.tta in (False, True, *MODES), f"False, True or {MODES}"),
                ("tta_space", self.tta_space, self.tta_space in SPACES, f"one of {SPACES}"),
                (
                    "postprocessing",
                    self.postprocessing,
                    isinstance(self.postprocessing, PostProcessing),
                    "a PostProcessing",
                ),
            ]
            if not ok
        ]
        if problems:
            raise UnetlabError(f"invalid prediction options: {'; '.join(problems)}")


class ArrayPredictor:
    """Predicts numpy images with any backend; see the module docstring. ``card``: the model
    card when opened from a file (:func:`unetlab.inference.open_model`)."""

    card: ModelCard | None = None

    def __init__(
        self,
        network: BatchNetwork,
        prepare: Prepare,
        geometry: Geometry,
        in_channels: int,
        class_names: Sequence[str],
        class_colors: Sequence[Sequence[int]] | None = None,
        options: PredictOptions | None = None,
    ):
        self.options = options or PredictOptions()
        self.geometry = geometry
        self.in_channels = in_channels
        self.class_names = list(class_names)
        self.class_colors = [tuple(int(v) for v in c) for c in (class_colors or [])]
        self.prepare = prepare

        # backends need C-contiguous float32 (TTA's flips and rotations hand over views)
        def contiguous(batch: np.ndarray) -> np.ndarray:
            return network(np.ascontiguousarray(batch, dtype=np.float32))

        self.network: BatchNetwork = contiguous
        if self.options.tta:
            from unetlab.inference.tta import with_tta

            self.network = with_tta(contiguous, self.options.tta, space=self.options.tta_space)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def check_image(self, image: np.ndarray, source: str | Path | None = None) -> np.ndarray:
        """The image as ``H x W x C`` with the model's channel count, or a clear error.

        A gray image is repeated to 3 channels for an RGB model; an RGB image whose channels are
        equal is used as gray for a 1-channel model; anything else that does not fit is refused.
        """
        image = np.asarray(image)
        if image.ndim == 2:
            image = image[:, :, None]
        if image.ndim != 3 or image.shape[0] < 1 or image.shape[1] < 1:
            raise UnetlabError(
                f"expected an H x W or H x W x C image, got shape {image.shape}", source
            )
        channels = image.shape[2]
        if channels == self.in_channels:
            return image
        if channels == 1 and self.in_channels == 3:  # a view: tiles are copied when read
            return np.broadcast_to(image, (*image.shape[:2], 3))
        if channels in (3, 4) and self.in_channels == 1 and _is_gray(image[:, :, :3]):
            return image[:, :, :1]
        if channels == 4 and self.in_channels == 3:
            return image[:, :, :3]
        raise UnetlabError(
            f"the image has {channels} channel(s) but the model expects {self.in_channels}",
            source,
            "convert the image (e.g. to grayscale or RGB) to what the model was trained on",
        )

    @property
    def settings(self) -> dict[str, object]:
        """Backend, device, layout and precision this predictor runs (subclasses fill it in)."""
        return {}

    def needs_tiles(self, height: int, width: int) -> bool:
        """Whether this image is predicted in tiles (:func:`unetlab.inference.grid.needs_tiles`)."""
        return needs_tiles(self.geometry, height, width, self.options.tile)

    def tile_count(self, height: int, width: int) -> int:
        return make_grid(
            height, width, self.geometry, self.options.tile, self.options.overlap
        ).count

    def predict(
        self, image: np.ndarray, probabilities: bool = False, source: str | Path | None = None
    ) -> Prediction:
        """Labels (and optionally probabilities) for one ``H x W (x C)`` image of any size."""
        return self.predict_batch([image], probabilities, [source])[0]

    def predict_batch(
        self,
        images: Sequence[np.ndarray],
        probabilities: bool = False,
        sources: Sequence[str | Path | None] | None = None,
    ) -> list[Prediction]:
        """Predict several images; same-sized ones share forward passes of ``batch_size``."""
        sources = list(sources) if sources is not None else [None] * len(images)
        checked = [self.check_image(im, src) for im, src in zip(images, sources, strict=True)]
        working = [resize_image(image, self.working_scale) for image in checked]
        results: list[Prediction | None] = [None] * len(checked)
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, image in enumerate(working):
            if self.needs_tiles(*image.shape[:2]):
                results[index] = self._predict_tiled(image, probabilities, checked[index].shape)
            else:
                groups.setdefault(image.shape, []).append(index)
        size = self.options.batch_size
        for indices in groups.values():
            for start in range(0, len(indices), size):
                chunk = indices[start : start + size]
                logits = self.logits_whole([working[i] for i in chunk])
                for i, image_logits in zip(chunk, logits, strict=True):
                    at_input = resize_scores(image_logits, *checked[i].shape[:2])
                    results[i] = self._decide(at_input, probabilities)
        for result in results:
            assert result is not None
            result.labels = self.postprocess(result.labels)
        return results  # type: ignore[return-value]

    def postprocess(self, labels: np.ndarray) -> np.ndarray:
        """The labelling rule's ``labels`` after this predictor's post-processing (the step
        every prediction takes; callers that label logits themselves call it too)."""
        return self.options.postprocessing.apply(labels)

    @property
    def working_scale(self) -> float:
        """The resolution the network was trained at (the card's; 1 without a card): inputs
        are resized by it and scores back (:mod:`unetlab.data.resolution`)."""
        return self.card.working_scale if self.card is not None else 1.0

    def logits_whole(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """``N x K x H x W`` logits of same-sized images in one forward pass (mirror-padded),
        at the size given: the network's own call, without the working-scale resizing."""
        height, width = images[0].shape[:2]
        geometry = self.geometry
        start = -geometry.offset
        rows = (start, start + geometry.input_size(geometry.output_size(height)))
        cols = (start, start + geometry.input_size(geometry.output_size(width)))
        batch = np.stack([TileReader(im, True, self.prepare)(rows, cols) for im in images])
        logits = np.asarray(self.network(batch), dtype=np.float32)
        return logits[:, :, :height, :width]

    def logits(self, image: np.ndarray, source: str | Path | None = None) -> np.ndarray:
        """``K x H x W`` float32 logits of one image (tiled when it is large), at its size."""
        image = self.check_image(image, source)
        working = resize_image(image, self.working_scale)
        if self.needs_tiles(*working.shape[:2]):
            logits = self._tiled(working, "logits")
        else:
            logits = self.logits_whole([working])[0]
        return resize_scores(logits, *image.shape[:2])

    def _predict_tiled(
        self, image: np.ndarray, probabilities: bool, input_shape: tuple[int, ...]
    ) -> Prediction:
        """``image`` at the working scale, in tiles; the result at ``input_shape``'s size."""
        if probabilities or image.shape != input_shape:  # scores are resized before labelling
            logits = resize_scores(self._tiled(image, "logits"), *input_shape[:2])
            return self._decide(logits, probabilities)
        return Prediction(self._tiled(image, "labels"))

    def _tiled(self, image: np.ndarray, output: str) -> np.ndarray:
        options = self.options
        return predict_tiled(
            self.network,
            TileReader(image, channels_last=True, prepare=self.prepare),
            self.geometry,
            tile=options.tile,
            overlap=options.overlap,
            tile_weights=options.tile_weights,
            batch_size=options.batch_size,
            output=output,
            threshold=options.threshold,
            progress=options.progress and self.tile_count(*image.shape[:2]) >= 8,
        )

    def _decide(self, logits: np.ndarray, probabilities: bool) -> Prediction:
        labels = labels_from_logits(logits, self.options.threshold)
        chances = probabilities_from_logits(logits) if probabilities else None
        return Prediction(labels, chances)


def _is_gray(image: np.ndarray, rows: int = 1024) -> bool:
    """Whether all colour channels are equal (checked in row chunks: huge images stay cheap)."""
    return all(
        bool((chunk == chunk[:, :, :1]).all())
        for chunk in (image[start : start + rows] for start in range(0, len(image), rows))
    )
