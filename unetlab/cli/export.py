"""``unetlab export``: a thin layer over :func:`unetlab.export.onnx.export_onnx` and
:func:`unetlab.export.quantize.quantize_onnx`."""

from __future__ import annotations

from pathlib import Path

import click

from unetlab.cli.options import overwrite_option


@click.command()
@click.argument("checkpoint")
@click.option("--format", "fmt", default="onnx", show_default=True, type=click.Choice(["onnx"]))
@click.option(
    "--out",
    "out_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="Output file [the checkpoint path ending in .onnx, e.g. best.onnx].",
)
@click.option("--opset", default=17, show_default=True, type=click.IntRange(11, 21))
@click.option(
    "--input-scale",
    default=255.0,
    show_default=True,
    type=click.FloatRange(0, min_open=True),
    help="Full-scale pixel value the graph expects (65535 for 16-bit).",
)
@click.option(
    "--threshold",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    help="Foreground threshold stored for binary models (predict and evaluate default to it).",
)
@click.option(
    "--int8",
    "calibration",
    default=None,
    metavar="DATASET",
    help="Also write an int8 copy (NAME.int8.onnx), its activation ranges calibrated on "
    "images of DATASET's --calibration-split.",
)
@click.option("--calibration-split", default="train", show_default=True)
@click.option("--calibration-images", default=8, show_default=True, type=click.IntRange(1))
@click.option(
    "--calibration-method",
    default="minmax",
    show_default=True,
    type=click.Choice(["minmax", "entropy", "percentile"]),
)
@overwrite_option()
def export(
    checkpoint: str,
    fmt: str,
    out_path: str | None,
    opset: int,
    input_scale: float,
    threshold: float,
    calibration: str | None,
    calibration_split: str,
    calibration_images: int,
    calibration_method: str,
    overwrite: bool,
) -> None:
    """Export a checkpoint to ONNX (normalisation inside the graph, class names as metadata)
    and check ONNX Runtime against torch; with --int8, also an int8 copy for fast CPUs."""
    from unetlab.artifacts.checkpoint import resolve_checkpoint
    from unetlab.export.onnx import export_onnx
    from unetlab.fs.atomic import refuse_existing

    source = resolve_checkpoint(checkpoint)
    if calibration is not None:
        from unetlab.data.layouts import dataset_info

        dataset_info(calibration).ids(calibration_split)  # a bad dataset fails before exporting
    target = Path(out_path) if out_path else source.with_suffix(".onnx")
    int8_target = target.with_suffix(".int8.onnx")
    refuse_existing([target, *([int8_target] if calibration else [])], overwrite, [source])
    report = export_onnx(
        source, target, opset=opset, input_scale=input_scale, threshold=threshold,
        overwrite=overwrite,
    )
    shapes = ", ".join("x".join(map(str, s)) for s in report.checked_shapes)
    click.echo(
        f"wrote {report.path} ({report.megabytes:.1f} MB, opset {report.opset}, "
        f"{report.seconds:.1f} s)"
    )
    click.echo(
        f"checked: ONNX Runtime vs torch max |diff| {report.max_abs_diff:.2e} on "
        f"random inputs {shapes}"
    )
    click.echo(
        f"input: raw pixels float32 N x C x H x W in 0..{input_scale:g}; "
        f"use it with: unetlab predict {report.path} IMAGE..."
    )
    if report.working_scale != 1:
        click.echo(
            f"working scale {report.working_scale:g} (metadata 'working_scale'): the network "
            f"was trained on images resized by {report.working_scale:g}; outside unetlab, "
            "resize an image by it before the graph and the scores back to its size after"
        )
    if calibration is not None:
        from unetlab.export.quantize import quantize_onnx

        quantized = quantize_onnx(
            report.path,
            int8_target,
            calibration,
            split=calibration_split,
            num_images=calibration_images,
            method=calibration_method,
            overwrite=overwrite,
        )
        click.echo(
            f"wrote {quantized.path} (int8, {quantized.megabytes:.1f} MB, {quantized.method} "
            f"calibration on {quantized.num_images} '{calibration_split}' image(s), "
            f"{quantized.seconds:.1f} s); use it with: unetlab predict {quantized.path} "
            "IMAGE..."
        )
