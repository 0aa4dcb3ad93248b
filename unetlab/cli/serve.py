"""``unetlab serve``: a page to predict images and rank a split's images worst first (thin
over :mod:`unetlab.serve`)."""

from __future__ import annotations

import click

from unetlab.cli.options import precision_option


@click.command()
@click.argument("model", metavar="RUN_OR_ARTIFACT")
@click.option(
    "--data",
    default=None,
    help="Dataset folder: rank the images of --split worst first (cached in the run folder).",
)
@click.option("--split", default="val", show_default=True, help="Split to inspect with --data.")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; anything but a loopback address lets other machines in.",
)
@click.option("--port", default=7860, show_default=True, type=click.IntRange(1, 65535))
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 ...")
@precision_option("Checkpoints")
@click.option(
    "--tile",
    default=512,
    show_default=True,
    type=click.IntRange(16),
    help="Network input side; larger images are predicted in overlapping tiles.",
)
@click.option(
    "--max-upload-mb",
    default=100.0,
    show_default=True,
    type=click.FloatRange(0, min_open=True),
    help="Largest upload accepted.",
)
@click.option(
    "--max-megapixels",
    default=150.0,
    show_default=True,
    type=click.FloatRange(0, min_open=True),
    help="Largest image accepted (checked before its pixels are decoded).",
)
@click.option("--no-cache", is_flag=True, help="Inspect the split again; keep nothing on disk.")
def serve(
    model, data, split, host, port, device, precision, tile, max_upload_mb, max_megapixels, no_cache
) -> None:
    """Open a page to predict images with a run, checkpoint or .onnx export, and (with
    --data) to inspect a split: per-image IoU/Dice worst first, error maps, confusion matrix."""
    from unetlab.serve.app import ServeConfig, require_web, run_server

    require_web()
    config = ServeConfig(
        model=model,
        data=data,
        split=split,
        device=device,
        precision=precision,
        tile=tile,
        max_upload_mb=max_upload_mb,
        max_megapixels=max_megapixels,
        cache=not no_cache,
    )
    run_server(config, host, port, on_ready=lambda line: click.echo(line, err=True))
