"""``unetlab serve``: a page to predict images and rank a split's images worst first (thin
over :mod:`unetlab.serve`)."""

from __future__ import annotations

from collections.abc import Callable

import click

from unetlab.cli.options import F, device_option, precision_option, threads_option, tile_option


def _limit_option(flag: str, default: float, text: str) -> Callable[[F], F]:
    """One of the server's size limits: a positive number, shown with its default."""
    return click.option(
        flag, default=default, show_default=True, type=click.FloatRange(0, min_open=True),
        help=text,
    )  # fmt: skip


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
@device_option()
@precision_option("Checkpoints")
@tile_option()
@threads_option
@_limit_option("--max-upload-mb", 100.0, "Largest upload accepted.")
@_limit_option(
    "--max-megapixels", 150.0, "Largest image accepted (checked before its pixels are decoded)."
)
@click.option("--no-cache", is_flag=True, help="Inspect the split again; keep nothing on disk.")
def serve(
    model, data, split, host, port, device, precision, tile, threads, max_upload_mb,
    max_megapixels, no_cache,
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
        threads=threads,
        max_upload_mb=max_upload_mb,
        max_megapixels=max_megapixels,
        cache=not no_cache,
    )
    run_server(config, host, port, on_ready=lambda line: click.echo(line, err=True))
