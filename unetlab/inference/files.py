"""Predict files into a folder: what ``unetlab predict`` does, as a Python function.

For each image ``NAME.ext``: ``NAME_mask.png`` (palette PNG: the raw class index per pixel, shown
in the class colours by any viewer), ``NAME_overlay.png`` (colours blended on the image) and,
when asked for, ``NAME_probs.npy`` (:func:`save_probabilities`); for each video
``NAME_overlay.mp4`` and, when asked for, ``NAME_masks/NAME_<frame>.png``; and one
``legend.png`` with the class names and colours.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from unetlab.errors import UnetlabError
from unetlab.fs.atomic import write_file
from unetlab.inference.core import ArrayPredictor, Prediction
from unetlab.inference.inputs import InputFile
from unetlab.inference.overlay import class_fractions, legend, make_palette, save_overlay
from unetlab.progress import Progress

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

    def describe(self, class_names: Sequence[str]) -> str:
        """``a.png (41x30; road 60.1%, car 20.0%)`` and one ``  -> FILE`` line per output."""
        height, width = self.size
        detail = f"{self.frames} frames" if self.frames else f"{width}x{height}"
        if self.fractions:
            top = sorted(zip(self.fractions, class_names, strict=False), reverse=True)
            detail += "; " + ", ".join(f"{name} {100 * f:.1f}%" for f, name in top[:3] if f > 0)
        return "\n".join([f"{self.source} ({detail})", *(f"  -> {p}" for p in self.outputs)])


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


def output_files(
    item: InputFile, name: str, save_probs: bool = False, masks: bool = False
) -> list[str]:
    """The files (and folders) written for one input named ``name``, the first the main one."""
    if item.kind == "video":
        suffix = ".avi" if item.path.suffix.lower() == ".avi" else ".mp4"
        return [f"{name}_overlay{suffix}", *([f"{name}_masks"] if masks else [])]
    return [f"{name}_mask.png", f"{name}_overlay.png", *([f"{name}_probs.npy"] if save_probs
                                                         else [])]


def predict_files(
    predictor: ArrayPredictor,
    inputs: Sequence[InputFile],
    out_dir: str | Path,
    alpha: float = 0.5,
    progress: bool = True,
    *,
    verbose: bool = False,
    save_probs: bool = False,
    masks: bool = False,
    overwrite: bool = False,
) -> tuple[list[Written], Path]:
    """Predict every input into ``out_dir``; returns what was written per input and the legend.

    Images go through ``predictor.predict_batch`` ``batch_size`` at a time (same-sized images
    share forward passes; large ones are tiled). ``progress``: one bar over the images (the
    tiles' bar when there is a single image) and one per video (:mod:`unetlab.progress`);
    ``verbose``: a line per input as it is written (an input whose output names had to differ
    from its stem, e.g. ``a.png`` and ``a.jpg``, always gets its line: the mapping).
    ``save_probs``: also each image's class probabilities (:func:`save_probabilities`);
    ``masks``: also each video frame's index mask.
    Before any work, every output name is checked: none may be an input, and none may exist
    already unless ``overwrite``.
    """
    from unetlab.data.io import read_image
    from unetlab.fs.atomic import make_folder, refuse_existing
    from unetlab.inference.video import predict_video

    images = [item for item in inputs if item.kind == "image"]
    if save_probs and len(images) < len(inputs):
        video = next(item.path for item in inputs if item.kind != "image")
        raise UnetlabError(
            "--save-probs writes the probabilities of images, not of video frames",
            video,
            "predict the video without --save-probs (--masks writes each frame's labels)",
        )
    out_dir = Path(out_dir)
    names = dict(zip((item.path for item in inputs), output_names(inputs), strict=True))
    planned = [
        out_dir / f
        for item in inputs
        for f in output_files(item, names[item.path], save_probs, masks)
    ]
    refuse_existing([*planned, out_dir / "legend.png"], overwrite, [i.path for i in inputs])
    make_folder(out_dir)
    palette = make_palette(predictor.class_colors)
    written: list[Written] = []
    pending: list[tuple[InputFile, np.ndarray]] = []
    tile_bars = predictor.options.progress
    predictor.options.progress = progress and tile_bars and len(images) == 1
    bar = Progress(len(images), "images", "image", enabled=progress and len(images) > 1)

    def flush() -> None:
        predictions = predictor.predict_batch(
            [image for _, image in pending], save_probs, [item.path for item, _ in pending]
        )
        for (item, image), prediction in zip(pending, predictions, strict=True):
            done = _write_image_outputs(
                predictor, item, image, prediction, out_dir / names[item.path], palette, alpha,
                overwrite,
            )
            written.append(done)
            if verbose or names[item.path] != item.path.stem:  # a renamed output: the mapping
                bar.write(done.describe(predictor.class_names))
            bar.update(1)
        pending.clear()

    try:
        with bar:
            for item in images:
                with allow_large_images():
                    image = read_image(item.path)
                pending.append((item, image))
                # a large image is tiled on its own; small ones share forward passes
                if predictor.needs_tiles(*image.shape[:2]) or (
                    len(pending) >= predictor.options.batch_size
                ):
                    flush()
            if pending:
                flush()
    finally:
        predictor.options.progress = tile_bars
    for item in inputs:
        if item.kind == "video":
            name = names[item.path]
            result = predict_video(
                predictor,
                item.path,
                out_dir / output_files(item, name)[0],
                alpha,
                progress,
                masks_dir=out_dir / f"{name}_masks" if masks else None,
                overwrite=overwrite,
            )
            outputs = [result.path] + ([result.masks_dir] if result.masks_dir else [])
            written.append(Written(item.path, outputs, result.size[::-1], frames=result.frames))
            if verbose or name != item.path.stem:
                print(written[-1].describe(predictor.class_names), flush=True)
    legend_path = out_dir / "legend.png"
    totals = _mean_fractions(written, predictor.num_classes)
    picture = Image.fromarray(legend(predictor.class_names, palette, totals))
    write_file(legend_path, lambda h: picture.save(h, format="PNG"), overwrite=overwrite)
    return written, legend_path


def save_probabilities(
    path: str | Path, probabilities: np.ndarray, overwrite: bool = False
) -> Path:
    """Write one image's class probabilities as ``NAME_probs.npy``: float32, ``K x H x W``
    (``K`` = the model's classes: 2 for a one-channel sigmoid model), summing to 1 over ``K``
    at every pixel; ``numpy.load(path, mmap_mode="r")`` reads a slice of a large one.

    float32, not float16: float16 rounding can make two classes equal where the model told
    them apart, and then the argmax of the saved values would differ from the saved mask.
    The mask is their argmax (for a binary model: class 1 where ``p[1] > threshold``).
    """
    array = np.asarray(probabilities, dtype=np.float32)
    return write_file(Path(path), lambda handle: np.save(handle, array), overwrite=overwrite)


def _write_image_outputs(
    predictor: ArrayPredictor,
    item: InputFile,
    image: np.ndarray,
    prediction: Prediction,
    stem: Path,
    palette: np.ndarray,
    alpha: float,
    overwrite: bool = False,
) -> Written:
    from unetlab.data.io import write_mask

    labels = prediction.labels
    outputs = [
        write_mask(stem.with_name(f"{stem.name}_mask.png"), labels, palette.tolist(), overwrite),
        save_overlay(stem.with_name(f"{stem.name}_overlay.png"), image, labels, palette, alpha,
                     overwrite=overwrite),
    ]
    if prediction.probabilities is not None:
        probs_path = stem.with_name(f"{stem.name}_probs.npy")
        outputs.append(save_probabilities(probs_path, prediction.probabilities, overwrite))
    fractions = class_fractions(labels, predictor.num_classes)
    return Written(item.path, outputs, image.shape[:2], fractions)


def _mean_fractions(written: Sequence[Written], num_classes: int) -> list[float] | None:
    """Pixel-weighted class fractions over all predicted images (None when there were none)."""
    weighted = [(w.fractions, w.size[0] * w.size[1]) for w in written if w.fractions]
    if not weighted:
        return None
    total = sum(pixels for _, pixels in weighted)
    sums = np.sum([np.asarray(f) * pixels for f, pixels in weighted], axis=0)
    return (sums / total).tolist()[:num_classes]
