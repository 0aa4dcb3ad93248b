"""Predict files into a folder: what ``unetlab predict`` does, as a Python function.

For each image ``NAME.ext``: ``NAME_mask.png`` (palette PNG: the raw class index per pixel, shown
in the class colours by any viewer) and ``NAME_overlay.png`` (colours blended on the image); for
each video ``NAME_overlay.mp4``; and one ``legend.png`` with the class names and colours.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from unetlab.fs.atomic import write_file
from unetlab.inference.core import ArrayPredictor
from unetlab.inference.inputs import InputFile
from unetlab.inference.overlay import class_fractions, legend, make_palette, save_overlay

MAX_PIXELS = 2**31
"""Largest image ``predict`` opens (Pillow refuses > 179 Mpx by default as a decompression-bomb
guard); tiling keeps the network's memory bounded, so only the image itself must fit."""


@dataclass
class Written:
    """One input and the files written for it."""

    source: Path
    outputs: list[Path]
    size: tuple[int, int]  # height, width (video: frame size)
    fractions: list[float] = field(default_factory=list)
    frames: int = 0


@contextmanager
def allow_large_images(max_pixels: int = MAX_PIXELS) -> Iterator[None]:
    """Let Pillow open images up to ``max_pixels`` inside the block."""
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels // 2  # Pillow refuses above twice this value
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def output_names(inputs: Sequence[InputFile]) -> list[str]:
    """A distinct file stem per input (``a.png``, ``a.jpg``, ``a_2.png`` -> ``a``, ``a_3``,
    ``a_2``): see :func:`unetlab.fs.names.unique_names`."""
    from unetlab.fs.names import unique_names

    return unique_names([item.path.stem for item in inputs])


def output_files(item: InputFile, name: str) -> list[str]:
    """The files written for one input named ``name``."""
    if item.kind == "video":
        return [f"{name}_overlay{'.avi' if item.path.suffix.lower() == '.avi' else '.mp4'}"]
    return [f"{name}_mask.png", f"{name}_overlay.png"]


def predict_files(
    predictor: ArrayPredictor,
    inputs: Sequence[InputFile],
    out_dir: str | Path,
    alpha: float = 0.5,
    progress: bool = True,
    overwrite: bool = False,
) -> tuple[list[Written], Path]:
    """Predict every input into ``out_dir``; returns what was written per input and the legend.

    Images go through ``predictor.predict_batch`` ``batch_size`` at a time (same-sized images
    share forward passes; large ones are tiled). Before any work, every output name is checked:
    none may be an input, and none may exist already unless ``overwrite``.
    """
    from unetlab.data.io import read_image
    from unetlab.fs.atomic import make_folder, refuse_existing
    from unetlab.inference.video import predict_video

    out_dir = Path(out_dir)
    names = dict(zip((item.path for item in inputs), output_names(inputs), strict=True))
    planned = [out_dir / f for item in inputs for f in output_files(item, names[item.path])]
    refuse_existing([*planned, out_dir / "legend.png"], overwrite, [i.path for i in inputs])
    make_folder(out_dir)
    palette = make_palette(predictor.class_colors)
    written: list[Written] = []
    pending: list[tuple[InputFile, np.ndarray]] = []

    def flush() -> None:
        predictions = predictor.predict_batch(
            [image for _, image in pending], sources=[item.path for item, _ in pending]
        )
        for (item, image), prediction in zip(pending, predictions, strict=True):
            written.append(
                _write_image_outputs(
                    predictor,
                    item,
                    image,
                    prediction.labels,
                    out_dir / names[item.path],
                    palette,
                    alpha,
                    overwrite,
                )
            )
        pending.clear()

    for item in inputs:
        if item.kind != "image":
            continue
        with allow_large_images():
            image = read_image(item.path)
        pending.append((item, image))
        # a large image is tiled on its own; small ones share forward passes
        if predictor.needs_tiles(*image.shape[:2]) or len(pending) >= predictor.options.batch_size:
            flush()
    if pending:
        flush()
    for item in inputs:
        if item.kind == "video":
            result = predict_video(
                predictor,
                item.path,
                out_dir / output_files(item, names[item.path])[0],
                alpha,
                progress,
                overwrite=overwrite,
            )
            written.append(
                Written(item.path, [result.path], result.size[::-1], frames=result.frames)
            )
    legend_path = out_dir / "legend.png"
    totals = _mean_fractions(written, predictor.num_classes)
    picture = Image.fromarray(legend(predictor.class_names, palette, totals))
    write_file(legend_path, lambda h: picture.save(h, format="PNG"), overwrite=overwrite)
    return written, legend_path


def _write_image_outputs(
    predictor: ArrayPredictor,
    item: InputFile,
    image: np.ndarray,
    labels: np.ndarray,
    stem: Path,
    palette: np.ndarray,
    alpha: float,
    overwrite: bool = False,
) -> Written:
    from unetlab.data.io import write_mask

    mask_path = write_mask(
        stem.with_name(f"{stem.name}_mask.png"), labels, palette.tolist(), overwrite
    )
    overlay_path = save_overlay(
        stem.with_name(f"{stem.name}_overlay.png"),
        image,
        labels,
        palette,
        alpha,
        overwrite=overwrite,
    )
    fractions = class_fractions(labels, predictor.num_classes)
    return Written(item.path, [mask_path, overlay_path], image.shape[:2], fractions)


def _mean_fractions(written: Sequence[Written], num_classes: int) -> list[float] | None:
    """Pixel-weighted class fractions over all predicted images (None when there were none)."""
    weighted = [(w.fractions, w.size[0] * w.size[1]) for w in written if w.fractions]
    if not weighted:
        return None
    total = sum(pixels for _, pixels in weighted)
    sums = np.sum([np.asarray(f) * pixels for f, pixels in weighted], axis=0)
    return (sums / total).tolist()[:num_classes]
