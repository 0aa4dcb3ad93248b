"""Make predictions visible: class colours, colour masks, overlays on the image, a legend.

Index masks hold 0, 1, 2 ... and look black in an image viewer (the most reported "my prediction
is empty" confusion); these helpers turn them into colours. numpy and Pillow only, no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from unetlab.data.colors import voc_colormap

ROWS_PER_CHUNK = 1024  # overlays of huge images are blended in row chunks (bounded memory)


def make_palette(colors: Sequence[Sequence[int]] | None = None) -> np.ndarray:
    """``256 x 3`` uint8 colours: the given class colours first, the VOC colour map after."""
    palette = np.array(voc_colormap(256), dtype=np.uint8)
    for index, color in enumerate(list(colors or [])[:256]):
        palette[index] = [int(v) for v in color[:3]]
    return palette


def to_display(image: np.ndarray) -> np.ndarray:
    """Any ``H x W (x C)`` uint8/uint16/float image as ``H x W x 3`` uint8 RGB for viewing."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


def colorize(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """``H x W`` labels -> ``H x W x 3`` uint8 colours."""
    return palette[labels]


BACKGROUND = 0
"""The class an overlay leaves clear by default: index 0, background in the usual convention."""


def blend(
    image: np.ndarray,
    labels: np.ndarray,
    palette: np.ndarray,
    alpha: float = 0.5,
    clear: int | Sequence[int] | None = BACKGROUND,
) -> np.ndarray:
    """The image with class colours laid over it: ``(1 - alpha) * image + alpha * colour``.

    ``alpha`` (the opacity) 0 shows the image, 1 the colour mask. Pixels of the ``clear``
    class(es) (default: class 0, the background) keep the image as it is, so an overlay only
    tints what was found instead of darkening everything; ``clear=None`` colours every class.
    Computed in integers, in row chunks, so a 20000 x 20000 image needs no float copy.
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    if image.shape[:2] != labels.shape:
        raise ValueError(f"image {image.shape[:2]} and labels {labels.shape} differ in size")
    weights = np.full(256, round(alpha * 256), np.uint16)
    if clear is not None:
        weights[np.atleast_1d(np.asarray(clear, dtype=np.int64))] = 0
    out = np.empty((*labels.shape, 3), np.uint8)
    for start in range(0, len(labels), ROWS_PER_CHUNK):
        rows = slice(start, start + ROWS_PER_CHUNK)
        picture = to_display(image[rows]).astype(np.uint16)
        colors = palette[labels[rows]].astype(np.uint16)
        weight = weights[labels[rows]][:, :, None]
        out[rows] = (picture * (256 - weight) + colors * weight + 128) >> 8
    return out


def save_overlay(
    path: str | Path,
    image: np.ndarray,
    labels: np.ndarray,
    palette: np.ndarray,
    alpha: float = 0.5,
    clear: int | Sequence[int] | None = BACKGROUND,
    *,
    overwrite: bool = False,
) -> Path:
    """Write :func:`blend` as an image file (PNG, JPEG ... by the ending).

    Blended straight into OpenCV's BGR order and encoded from the array, so a 20000 x 20000
    overlay costs one copy of the image, not the three that a Pillow round trip needs. Written
    atomically, never over a file this invocation did not create unless ``overwrite``.
    """
    import cv2

    path = Path(path)
    bgr = blend(_reversed_channels(image), labels, palette[:, ::-1], alpha, clear)
    ok, encoded = cv2.imencode(path.suffix or ".png", bgr)
    if not ok:
        raise ValueError(f"OpenCV cannot encode an image as '{path.suffix}'")
    from unetlab.fs.atomic import write_file

    return write_file(path, lambda handle: handle.write(encoded.data), overwrite=overwrite)


def _reversed_channels(image: np.ndarray) -> np.ndarray:
    """RGB -> BGR as a view (gray images are unchanged)."""
    return image[:, :, 2::-1] if image.ndim == 3 and image.shape[2] >= 3 else image


def legend(
    class_names: Sequence[str],
    palette: np.ndarray,
    fractions: Sequence[float] | None = None,
    row_height: int = 28,
) -> np.ndarray:
    """A legend image: one row per class with its colour swatch, index, name and (optionally)
    the fraction of predicted pixels."""
    try:
        font = ImageFont.load_default(size=row_height * 4 // 7)  # scalable (Pillow >= 10.1)
    except TypeError:
        font = ImageFont.load_default()
    lines = [
        f"{index}  {name}" + (f"  {100 * fractions[index]:.1f}%" if fractions is not None else "")
        for index, name in enumerate(class_names)
    ]
    text_width = max(int(font.getlength(line)) for line in lines) if lines else 0
    width = row_height * 2 + text_width + 12
    canvas = Image.new("RGB", (width, row_height * max(len(lines), 1) + 4), "white")
    draw = ImageDraw.Draw(canvas)
    for row, line in enumerate(lines):
        top = 2 + row * row_height
        color = tuple(int(v) for v in palette[row])
        draw.rectangle(
            [4, top + 2, 4 + row_height * 2 - 8, top + row_height - 4], fill=color, outline="black"
        )
        draw.text(
            (row_height * 2 + 4, top + row_height // 2), line, fill="black", font=font, anchor="lm"
        )
    return np.asarray(canvas)


def class_fractions(labels: np.ndarray, num_classes: int) -> list[float]:
    """Fraction of pixels predicted as each class (counted in row chunks: ``bincount`` would
    otherwise make an 8-byte copy of every label)."""
    counts = np.zeros(max(num_classes, 1), np.int64)
    for start in range(0, len(labels), ROWS_PER_CHUNK):
        chunk = labels[start : start + ROWS_PER_CHUNK].ravel()
        counts += np.bincount(chunk, minlength=len(counts))[: len(counts)]
    return (counts / max(labels.size, 1)).tolist()
