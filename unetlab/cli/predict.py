"""``unetlab predict``, ``unetlab export`` and ``unetlab bench``: thin layers over
:mod:`unetlab.inference` and :mod:`unetlab.export`.

Nothing here imports torch at module level: ``predict --backend onnx`` runs without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from unetlab.cli.options import precision_option
from unetlab.errors import UnetlabError


def load_predictor(model: str, backend: str, device: str, precision: str = "fp32", **options: Any):
    """A torch ``Predictor`` for a checkpoint/run folder or an ``OnnxPredictor`` for ``.onnx``."""
    if backend == "auto":
        backend = "onnx" if str(model).lower().endswith(".onnx") else "torch"
    if backend == "onnx":
        if not str(model).lower().endswith(".onnx"):
            raise UnetlabError(
                "--backend onnx needs an exported .onnx file",
                model,
                f"export it first: unetlab export {model} --out model.onnx",
            )
        if precision not in ("fp32", "auto"):
            raise UnetlabError(
                f"--precision {precision} applies to checkpoints (the torch backend); an .onnx "
                "file runs in the precision it was exported in",
                model,
                "for a faster ONNX model, export an int8 copy (unetlab export CKPT --int8 DATA)",
            )
        from unetlab.export.onnx_runtime import OnnxPredictor

        return OnnxPredictor(model, **options)
    if str(model).lower().endswith(".onnx"):
        raise UnetlabError("an .onnx file runs on the onnx backend", model, "use --backend onnx")
    from unetlab.inference.predictor import Predictor

    return Predictor.from_checkpoint(model, device=device, precision=precision, **options)


@click.command()
@click.argument("model", metavar="CHECKPOINT")
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
@click.option(
    "--threshold",
    default=None,
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    help="Foreground probability cut for binary models [0.5, or the "
    "value stored in an .onnx file].",
)
@click.option("--tta", is_flag=True, help="Average over flipped copies (4x slower).")
@click.option("--tta-rot90", is_flag=True, help="With --tta: add the 90-degree rotations (8x).")
@click.option(
    "--tile",
    default=512,
    show_default=True,
    type=click.IntRange(16),
    help="Network input side; larger images are predicted in overlapping tiles.",
)
@click.option(
    "--overlap",
    default=0.25,
    show_default=True,
    type=click.FloatRange(0, 0.9),
    help="Fraction of a tile shared with its neighbours.",
)
@click.option(
    "--tile-weights",
    default="gaussian",
    show_default=True,
    type=click.Choice(["gaussian", "linear", "constant"]),
    help="How overlapping tiles are blended.",
)
@click.option(
    "--batch-size",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="Images, tiles or video frames per forward pass (raise it on a GPU; on a CPU it "
    "mostly costs memory).",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 ...")
@click.option(
    "--backend",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "torch", "onnx"]),
    help="torch for checkpoints; onnx for exported .onnx files (no torch needed).",
)
@precision_option("Checkpoints")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace output files that exist already (never done without it).",
)
def predict(
    model,
    inputs,
    out_dir,
    alpha,
    threshold,
    tta,
    tta_rot90,
    tile,
    overlap,
    tile_weights,
    batch_size,
    device,
    backend,
    precision,
    quiet,
    overwrite,
) -> None:
    """Predict images, folders, glob patterns or videos with a checkpoint (or run folder).

    Writes NAME_mask.png (palette PNG: raw class indices, shown in colour), NAME_overlay.png
    (colours blended on the image), NAME_overlay.mp4 for videos, and legend.png.
    """
    from unetlab.inference.files import predict_files
    from unetlab.inference.inputs import discover_inputs

    found = discover_inputs(inputs)
    options: dict[str, Any] = {
        "tile": tile,
        "overlap": overlap,
        "blend": tile_weights,
        "batch_size": batch_size,
        "tta": ("flips+rot90" if tta_rot90 else "flips") if tta or tta_rot90 else False,
        "progress": not quiet,
    }
    if threshold is not None:
        options["threshold"] = threshold
    predictor = load_predictor(model, backend, device, precision, **options)
    if threshold is not None and len(predictor.class_names) > 2:
        click.echo(
            f"note: --threshold ignored: the model has {predictor.num_classes} classes "
            "(argmax decides)",
            err=True,
        )
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
    help="Default threshold stored for binary models.",
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
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace output files that exist already (never done without it).",
)
def export(
    checkpoint,
    fmt,
    out_path,
    opset,
    input_scale,
    threshold,
    calibration,
    calibration_split,
    calibration_images,
    calibration_method,
    overwrite,
) -> None:
    """Export a checkpoint to ONNX (normalisation inside the graph, class names as metadata)
    and check ONNX Runtime against torch; with --int8, also an int8 copy for fast CPUs."""
    from unetlab.engine.checkpoint import resolve_checkpoint
    from unetlab.export.onnx import export_onnx

    source = resolve_checkpoint(checkpoint)
    if calibration is not None:
        from unetlab.data.layouts import dataset_info

        dataset_info(calibration).ids(calibration_split)  # a bad dataset fails before exporting
    from unetlab.fs.atomic import refuse_existing

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


def _parse_shape(text: str) -> tuple[int, int, int]:
    try:
        c, h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"'{text}' is not CxHxW, e.g. 3x512x512") from None
    return c, h, w


def _parse_options(values: tuple[str, ...]) -> dict[str, Any]:
    import yaml

    options = {}
    for value in values:
        key, sep, raw = value.partition("=")
        if not sep:
            raise click.BadParameter(f"'{value}' is not KEY=VALUE, e.g. base=32")
        options[key.strip()] = yaml.safe_load(raw)
    return options


@click.command()
@click.argument("target", metavar="CHECKPOINT_OR_MODEL")
@click.option(
    "--input",
    "input_shape",
    default="3x512x512",
    show_default=True,
    help="Input C x H x W (rounded up to a size the network accepts).",
)
@click.option("--batch", default=1, show_default=True, type=click.IntRange(1))
@click.option("--backend", default="torch", show_default=True, type=click.Choice(["torch", "onnx"]))
@click.option(
    "--threads", default=None, type=click.IntRange(1), help="CPU threads [library default]."
)
@click.option("--channels-last", is_flag=True, help="torch: NHWC memory format.")
@click.option("--compile", "compile_", is_flag=True, help="torch: torch.compile the model first.")
@click.option("--runs", default=20, show_default=True, type=click.IntRange(1))
@click.option("--warmup", default=3, show_default=True, type=click.IntRange(0))
@click.option(
    "--classes",
    default=2,
    show_default=True,
    type=click.IntRange(1),
    help="For a model name: output classes.",
)
@click.option(
    "-o",
    "--option",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="For a model name: a model option (repeatable), e.g. -o base=32.",
)
@click.option("--device", default="auto", show_default=True)
@precision_option("torch backend")
def bench(
    target,
    input_shape,
    batch,
    backend,
    threads,
    channels_last,
    compile_,
    runs,
    warmup,
    classes,
    options,
    device,
    precision,
) -> None:
    """Latency (median, p90) and FPS of a checkpoint, an .onnx file or a model name."""
    from unetlab.inference.bench import bench as run_bench

    result = run_bench(
        target,
        input_shape=_parse_shape(input_shape),
        batch=batch,
        backend=backend,
        threads=threads,
        channels_last=channels_last,
        compile=compile_,
        runs=runs,
        warmup=warmup,
        num_classes=classes,
        options=_parse_options(options),
        device=device,
        precision=precision,
    )
    click.echo(result.format())
