"""``unetlab predict``: a thin layer over :func:`unetlab.api.predict` (which opens the model
with :func:`unetlab.inference.open_model` and writes with
:func:`unetlab.inference.files.predict_files`).

Nothing here imports torch at module level: ``predict`` of an ``.onnx`` file runs without it.
"""

from __future__ import annotations

from pathlib import Path

import click

from unetlab.cli.options import (
    backend_option,
    batch_size_option,
    device_option,
    overwrite_option,
    postprocessing_options,
    precision_option,
    threads_option,
    threshold_option,
    tiling_options,
    tta_options,
)


@click.command()
@click.argument("model", metavar="MODEL")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option(
    "--out",
    "out_dir",
    default="predictions",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for masks, overlays and legend.",
)
@click.option(
    "--alpha",
    "--blend",
    "alpha",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Overlay opacity of the class colours (0 = image only, 1 = colours only); the "
    "background (class 0) stays clear.",
)
@click.option(
    "--save-probs",
    is_flag=True,
    help="Also write NAME_probs.npy per image: class probabilities, float32 K x H x W "
    "(4 bytes per class and pixel; numpy.load reads it).",
)
@click.option(
    "--masks",
    is_flag=True,
    help="Videos: also write each frame's index mask, NAME_masks/NAME_<frame>.png.",
)
@threshold_option()
@tta_options()
@tiling_options()
@batch_size_option("Images, tiles or video frames")
@device_option()
@backend_option()
@precision_option("Checkpoints")
@postprocessing_options()
@threads_option
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("-v", "--verbose", is_flag=True, help="A line per input, with its files.")
@overwrite_option()
def predict(
    model: str,
    inputs: tuple[str, ...],
    out_dir: str,
    alpha: float,
    save_probs: bool,
    masks: bool,
    threshold: float | None,
    tta: bool | None,
    tta_rot90: bool,
    tile: int,
    overlap: float,
    tile_weights: str,
    batch_size: int,
    device: str,
    backend: str,
    precision: str,
    min_size: int | None,
    keep_largest: str | None,
    fill_holes: str | None,
    no_postprocessing: bool,
    threads: int | None,
    quiet: bool,
    verbose: bool,
    overwrite: bool,
) -> None:
    """Predict images, folders, glob patterns or videos with MODEL: a run folder, a .pt
    checkpoint or an exported .onnx file (fp32 or int8).

    Writes NAME_mask.png (palette PNG: raw class indices, shown in colour), NAME_overlay.png
    (colours blended on the image), NAME_overlay.mp4 for videos, and legend.png; with
    --save-probs NAME_probs.npy per image, with --masks NAME_masks/ per video.
    """
    from unetlab.api import predict as run_predict

    written, legend_path = run_predict(
        model, inputs, out=out_dir, alpha=alpha, threshold=threshold, tta=tta,
        tta_rot90=tta_rot90, tile=tile, overlap=overlap, tile_weights=tile_weights,
        batch_size=batch_size, device=device, backend=backend, precision=precision,
        threads=threads, save_probs=save_probs, masks=masks, quiet=quiet, verbose=verbose,
        min_size=min_size, keep_largest=keep_largest, fill_holes=fill_holes,
        no_postprocessing=no_postprocessing, overwrite=overwrite,
    )  # fmt: skip
    click.echo(f"legend: {legend_path}")
    click.echo(f"{len(written)} input(s) predicted into {Path(out_dir).resolve()}")
