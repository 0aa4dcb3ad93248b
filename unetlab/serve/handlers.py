"""What the page asks for, as plain functions of numpy arrays (no web framework in here).

An upload becomes an image (:func:`decode_upload`, with clear refusals), the image a
:class:`PredictionView` (full-size labels for downloads, a display-size copy for the page, where
the overlay, per-class toggles, threshold and heat maps are drawn), and labels become files
(:func:`mask_png`, :func:`overlay_png`) or an error map against the truth (:func:`error_map`).
:func:`resolve_inside` is the one guard for serving a file by name.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from unetlab.errors import UnetlabError
from unetlab.inference.core import ArrayPredictor
from unetlab.inference.error_map import (  # noqa: F401  (the page's error maps; owned there)
    FALSE_NEGATIVE,
    FALSE_POSITIVE,
    IGNORED,
    OTHER_ERROR,
    error_counts,
    error_map,
)

DISPLAY_SIDE = 1600
"""Longest side of the copy the page draws; downloads keep the full size."""

PROBABILITY_BUDGET = 2**28
"""Most class-probability values (classes x pixels) kept for heat maps: 1 GiB of float32."""


Progress = Callable[[int, int], None]


# ---------------------------------------------------------------- uploads


def decode_upload(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """The ``H x W x C`` image in an uploaded file, read like ``unetlab predict`` reads files
    (8/16 bit, gray/RGB/palette/RGBA, TIFF ...), or a :class:`UnetlabError` naming the upload.

    Images over ``max_pixels`` are refused before their pixels are decoded.
    """
    from unetlab.data.io import read_image
    from unetlab.inference.files import allow_large_images

    if not data:
        raise UnetlabError("the upload is empty (0 bytes)", name, "choose an image file")
    suffix = Path(name).suffix.lower()
    fd, temp = tempfile.mkstemp(prefix="unetlab-upload-", suffix=suffix if suffix else ".img")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        with allow_large_images(max_pixels):
            return read_image(temp)
    except UnetlabError as exc:  # the temporary path means nothing to the user: name the upload
        message = exc.message.replace("image too large to open safely", "image too large")
        raise UnetlabError(message, name, exc.hint) from None
    finally:
        Path(temp).unlink(missing_ok=True)


# ---------------------------------------------------------------- prediction


@dataclass
class PredictionView:
    """One predicted upload: full-size arrays for downloads, display-size ones for the page.

    ``foreground``: class-1 probability of a binary model (full size, for re-thresholding);
    ``display_probabilities``: ``K x h x w`` uint8 (probability x 255), None over the budget;
    ``postprocess``: the predictor's post-processing, applied to re-thresholded labels too.
    """

    name: str
    image: np.ndarray
    labels: np.ndarray
    foreground: np.ndarray | None
    display_image: np.ndarray
    display_labels: np.ndarray
    display_probabilities: np.ndarray | None
    fractions: list[float]
    tiles: int
    seconds: float
    notes: list[str] = field(default_factory=list)
    postprocess: Callable[[np.ndarray], np.ndarray] | None = None

    def summary(self) -> dict:
        """JSON-ready facts for the page."""
        height, width = self.labels.shape
        return {
            "name": self.name,
            "width": width,
            "height": height,
            "display_width": self.display_labels.shape[1],
            "display_height": self.display_labels.shape[0],
            "fractions": self.fractions,
            "tiles": self.tiles,
            "seconds": round(self.seconds, 3),
            "probabilities": self.display_probabilities is not None,
            "notes": self.notes,
        }


def forward_passes(predictor: ArrayPredictor, height: int, width: int) -> int:
    """Network calls an image of this size takes (tiles / batch size; 1 when not tiled)."""
    if not predictor.needs_tiles(height, width):
        return 1
    return math.ceil(predictor.tile_count(height, width) / predictor.options.batch_size)


@contextmanager
def counting_passes(predictor: ArrayPredictor, on_pass: Callable[[], None]) -> Iterator[None]:
    """Call ``on_pass`` after every forward pass of ``predictor`` inside the block (progress of
    tiled images). Not thread-safe: one caller at a time, as the server's single worker is."""
    network = predictor.network

    def counted(batch: np.ndarray) -> np.ndarray:
        result = network(batch)
        on_pass()
        return result

    predictor.network = counted
    try:
        yield
    finally:
        predictor.network = network


def predict_view(
    predictor: ArrayPredictor,
    image: np.ndarray,
    name: str,
    progress: Progress | None = None,
    display_side: int = DISPLAY_SIDE,
) -> PredictionView:
    """Predict one image (tiled when large) into a :class:`PredictionView`.

    Labels are exactly ``predictor.predict(image).labels``; ``progress(done, total)`` is
    called after each forward pass.
    """
    from unetlab.inference.labels import labels_from_logits, probabilities_from_logits
    from unetlab.inference.overlay import class_fractions, to_display

    start = time.perf_counter()
    image = predictor.check_image(image, name)
    height, width = image.shape[:2]
    total = forward_passes(predictor, height, width)
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(min(done, total), total)

    classes = predictor.num_classes
    keep_probabilities = classes * height * width <= PROBABILITY_BUDGET
    notes = []
    with counting_passes(predictor, step):
        if keep_probabilities:
            logits = predictor.logits(image, name)
            labels = predictor.postprocess(labels_from_logits(logits, predictor.options.threshold))
            probabilities = probabilities_from_logits(logits)
            del logits
        else:
            labels = predictor.predict(image, source=name).labels
            probabilities = None
            notes.append("image too large for heat maps: classes only")
    foreground = probabilities[1].astype(np.float32) if probabilities is not None else None
    if classes != 2:
        foreground = None
    scale = min(1.0, display_side / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    display_probabilities = None
    if probabilities is not None:
        quantised = np.rint(probabilities * 255).astype(np.uint8)
        display_probabilities = np.stack([resize(p, size, smooth=True) for p in quantised])
    return PredictionView(
        name=name,
        image=image,
        labels=labels,
        foreground=foreground,
        display_image=resize(to_display(image), size, smooth=True),
        display_labels=resize(labels.astype(np.uint8), size, smooth=False),
        display_probabilities=display_probabilities,
        fractions=class_fractions(labels, classes),
        tiles=predictor.tile_count(height, width) if predictor.needs_tiles(height, width) else 1,
        seconds=time.perf_counter() - start,
        notes=notes,
        postprocess=predictor.postprocess,
    )


def resize(array: np.ndarray, size: tuple[int, int], smooth: bool) -> np.ndarray:
    """``array`` at ``size`` (width, height): area averaging, or nearest for labels."""
    import cv2

    if (array.shape[1], array.shape[0]) == size:
        return np.ascontiguousarray(array)
    interpolation = cv2.INTER_AREA if smooth else cv2.INTER_NEAREST
    return cv2.resize(array, size, interpolation=interpolation)


def labels_at(view: PredictionView, threshold: float | None, default: float) -> np.ndarray:
    """The view's labels, re-cut at ``threshold`` for a binary model (class 1 where its
    probability exceeds it, the predictors' rule, then their post-processing); unchanged
    otherwise or at ``default``."""
    if threshold is None or view.foreground is None or threshold == default:
        return view.labels
    if not 0 < threshold < 1:
        raise UnetlabError(f"threshold {threshold} must lie strictly between 0 and 1")
    labels = (view.foreground > threshold).astype(np.uint8)
    return view.postprocess(labels) if view.postprocess is not None else labels


# ---------------------------------------------------------------- files for the page


def png_bytes(array: np.ndarray) -> bytes:
    """An ``H x W`` or ``H x W x 3`` uint8 array as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()


def mask_png(labels: np.ndarray, colors: Sequence[Sequence[int]]) -> bytes:
    """The index mask as a palette PNG (class indices stored, class colours shown), as
    ``unetlab predict`` writes ``NAME_mask.png``."""
    from unetlab.data.colors import full_palette

    image = Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8), mode="P")
    image.putpalette(full_palette([(int(c[0]), int(c[1]), int(c[2])) for c in colors]))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def render_overlay(
    image: np.ndarray,
    labels: np.ndarray,
    colors: Sequence[Sequence[int]],
    alpha: float,
    hidden: Sequence[int] | None = None,
) -> np.ndarray:
    """Class colours blended on the image (``unetlab predict``'s overlay); classes in
    ``hidden`` show the image alone (None: the background alone, as ``predict`` leaves it;
    the page sends the classes switched off in its legend, the background among them unless
    it was switched on)."""
    from unetlab.inference.overlay import BACKGROUND, blend, make_palette

    if not 0 <= alpha <= 1:
        raise UnetlabError(f"opacity {alpha} must lie in [0, 1]")
    clear = [BACKGROUND] if hidden is None else list(hidden)
    return blend(image, labels, make_palette(colors), alpha, clear=clear or None)


def overlay_png(image, labels, colors, alpha: float, hidden: Sequence[int] | None = None) -> bytes:
    return png_bytes(render_overlay(image, labels, colors, alpha, hidden))


def parse_classes(text: str | None, num_classes: int) -> list[int]:
    """``"1,3"`` -> ``[1, 3]``, each a class index of the model; a clear error otherwise."""
    if not text:
        return []
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UnetlabError(f"'{text}' is not a list of class indices such as 1,3") from None
    bad = [v for v in values if not 0 <= v < num_classes]
    if bad:
        raise UnetlabError(f"no class {bad[0]}: the model has classes 0..{num_classes - 1}")
    return values


# ---------------------------------------------------------------- files by name


def resolve_inside(root: str | Path, name: str) -> Path | None:
    """The file ``root/name`` if it is a regular file inside ``root``, else None.

    Refuses absolute names, ``..`` parts, backslashes, NUL bytes and links leading outside:
    the one check for every file served by name.
    """
    if not name or "\0" in name or "\\" in name or name.startswith("/"):
        return None
    parts = Path(name).parts
    if any(part in ("..", ".") for part in parts) or Path(name).is_absolute():
        return None
    base = Path(root).resolve()
    try:
        target = (base / name).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not target.is_relative_to(base) or not target.is_file():
        return None
    return target
