"""``unetlab evaluate``: score a trained model on a labelled split (thin over ``evaluate``)."""

from __future__ import annotations

from pathlib import Path

import click

from unetlab.cli.options import (
    batch_size_option,
    device_option,
    overwrite_option,
    postprocessing_from,
    postprocessing_options,
    precision_option,
    threads_option,
    threshold_option,
    tiling_options,
    tta_mode,
    tta_options,
)


@click.command()
@click.argument("checkpoint", metavar="RUN_OR_CHECKPOINT", type=click.Path(path_type=Path))
@click.option(
    "--data",
    "data_root",
    required=True,
    type=click.Path(path_type=Path),
    help="Dataset folder (VOC layout or images/ + masks/ + splits/).",
)
@click.option(
    "--split", default=None,
    help="Split to evaluate [default: val; auto-val for a dataset without split lists].",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Output folder [default: RUN/evaluation/SPLIT].",
)
@device_option()
@batch_size_option("Images")
@threshold_option()
@tta_options()
@tiling_options()
@precision_option("Checkpoints")
@click.option(
    "--worst",
    "--panels",
    "num_panels",
    default=4,
    show_default=True,
    type=click.IntRange(min=0),
    help="Save image | truth | prediction | error map panels of the N images with the lowest "
    "mIoU (every image's scores are in per_image.csv).",
)
@postprocessing_options()
@click.option(
    "--save-postprocessing",
    is_flag=True,
    help="Store the post-processing applied in RUN/postprocessing.json: predict, serve and "
    "export of the run then apply it.",
)
@click.option(
    "--boundary-class",
    default=None,
    help="Binary tasks: class (name or index) that separates the regions of the Rand "
    "error [the class named 'membrane' if any, else 0].",
)
@threads_option
@click.option("--quiet", is_flag=True, help="No progress bar.")
@overwrite_option("Replace the outputs of an earlier evaluation.")
def evaluate(
    checkpoint: Path,
    data_root: Path,
    split: str | None,
    out_dir: Path | None,
    device: str,
    batch_size: int,
    threshold: float | None,
    tta: bool | None,
    tta_rot90: bool,
    tile: int,
    overlap: float,
    tile_weights: str,
    precision: str,
    num_panels: int,
    min_size: int | None,
    keep_largest: str | None,
    fill_holes: str | None,
    no_postprocessing: bool,
    save_postprocessing: bool,
    boundary_class: str | None,
    threads: int | None,
    quiet: bool,
    overwrite: bool,
) -> None:
    """Per-class IoU/recall/precision/Dice, mIoU, pixel accuracy and mPA of a trained model
    (a run folder, a .pt checkpoint, or an exported .onnx file, fp32 or int8), scored on the
    labels 'unetlab predict' writes for the same images and options.

    Binary tasks also get pixel error and adapted Rand error. Writes report.json, per_image.csv
    (every image's scores, worst first), a confusion-matrix PNG and panels of the worst images.
    """
    from unetlab.engine.evaluate import evaluate as run_evaluation
    from unetlab.fs.atomic import overwriting

    with overwriting(overwrite):
        report = run_evaluation(
            checkpoint,
            data_root,
            split=split,
            out_dir=out_dir,
            device=device,
            batch_size=batch_size,
            num_panels=num_panels,
            threshold=threshold,
            tta=tta_mode(tta, tta_rot90),
            tile=tile,
            overlap=overlap,
            tile_weights=tile_weights,
            precision=precision,
            boundary_class=boundary_class,
            postprocessing=postprocessing_from(
                min_size, keep_largest, fill_holes, no_postprocessing
            ),
            save_postprocessing=save_postprocessing,
            threads=threads,
            progress=not quiet,
        )
    click.echo(report.summary())
