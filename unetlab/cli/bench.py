"""``unetlab bench``: a thin layer over :func:`unetlab.engine.bench.bench`."""

from __future__ import annotations

import click

from unetlab.cli.options import (
    backend_option,
    device_option,
    model_option_flags,
    parse_options,
    parse_shape,
    precision_option,
    threads_option,
)


@click.command()
@click.argument("target", metavar="MODEL")
@click.option(
    "--input",
    "input_shape",
    default="3x512x512",
    show_default=True,
    help="Image size C x H x W (predicted as predict would: padded, or tiled above --tile).",
)
@click.option("--batch", default=1, show_default=True, type=click.IntRange(1))
@backend_option()
@threads_option
@click.option(
    "--channels-last/--no-channels-last",
    default=None,
    help="torch: NHWC memory format [predict's choice: on for CPUs].",
)
@click.option("--compile", "compile_", is_flag=True, help="torch: torch.compile the model first.")
@click.option("--tile", default=None, type=click.IntRange(16), help="As for predict [512].")
@click.option("--runs", default=20, show_default=True, type=click.IntRange(1))
@click.option("--warmup", default=3, show_default=True, type=click.IntRange(0))
@model_option_flags()
@device_option()
@precision_option("torch backend")
def bench(
    target: str,
    input_shape: str,
    batch: int,
    backend: str,
    threads: int | None,
    channels_last: bool | None,
    compile_: bool,
    tile: int | None,
    runs: int,
    warmup: int,
    classes: int | None,
    options: tuple[str, ...],
    device: str,
    precision: str,
) -> None:
    """Latency (median, p90) and FPS of what 'unetlab predict MODEL' runs, on this machine.

    MODEL is a run folder, a .pt checkpoint, an .onnx file or a model name (random weights).
    """
    from unetlab.engine.bench import bench as run_bench

    shape = parse_shape(input_shape)
    assert shape is not None
    result = run_bench(
        target,
        input_shape=shape,
        batch=batch,
        backend=backend,
        threads=threads,
        channels_last=channels_last,
        compile=compile_,
        runs=runs,
        warmup=warmup,
        out_channels=classes or 2,
        options=parse_options(options),
        device=device,
        precision=precision,
        tile=tile,
    )
    click.echo(result.format())
