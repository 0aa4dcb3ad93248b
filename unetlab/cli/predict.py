"""``unetlab predict``: a thin layer over :func:`unetlab.inference.open_model` and
:func:`unetlab.inference.files.predict_files`.

Nothing here imports torch at module level: ``predict`` of an ``.onnx`` file runs without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from unetlab.cli.options import (
    backend_option,
    batch_size_option,
    device_option,
    precision_option,
    threshold_option,
    tiling_options,
    tta_mode,
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
    "--blend",
    "alpha",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Overlay opacity of the class colours (0 = image only, 1 = colours only).",
)
@threshold_option()
@tta_options()
@tiling_options()
@batch_size_option("Images, tiles or video frames")
@device_option()
@backend_option()
@precision_option("Checkpoints")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace output files that exist already (never done without it).",
)
def predict(
    model: str,
    inputs: tuple[str, ...],
    out_dir: str,
    alpha: float,
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
    quiet: bool,
    overwrite: bool,
) -> None:
    """Predict images, folders, glob patterns or videos with MODEL: a run folder, a .pt
    checkpoint or an exported .onnx file (fp32 or int8).

    Writes NAME_mask.png (palette PNG: raw class indices, shown in colour), NAME_overlay.png
    (colours blended on the image), NAME_overlay.mp4 for videos, and legend.png.
    """
    from unetlab.inference.files import predict_files
    from unetlab.inference.inputs import discover_inputs
    from unetlab.inference.open import open_model

    found = discover_inputs(inputs)
    options: dict[str, Any] = {
        "tile": tile,
        "overlap": overlap,
        "blend": tile_weights,
        "batch_size": batch_size,
        "tta": tta_mode(tta, tta_rot90),
        "progress": not quiet,
        "threshold": threshold,
    }
    predictor = open_model(model, device, precision, backend=backend, **options)
    written, legend_path = predict_files(
        predictor, found, out_dir, alpha, progress=not quiet, overwrite=overwrite
    )
    for item in written:
        height, width = item.size
        detail = f"{item.frames} frames" if item.frames else f"{width}x{height}"
        if item.fractions:
            top = sorted(zip(item.fractions, predictor.class_names, strict=False), reverse=True)
            detail += "; " + ", ".join(f"{name} {100 * f:.1f}%" for f, name in top[:3] if f > 0)
        click.echo(f"{item.source} ({detail})")
        for path in item.outputs:
            click.echo(f"  -> {path}")
    click.echo(f"legend: {legend_path}")
    click.echo(f"{len(written)} input(s) predicted into {Path(out_dir).resolve()}")
