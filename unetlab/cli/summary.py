"""``unetlab summary``: layers, output shapes, parameters and GFLOPs of a model."""

from __future__ import annotations

from pathlib import Path

import click
import torch
from torch import nn

from unetlab.cli.options import model_option_flags, parse_options, parse_shape
from unetlab.errors import UnetlabError
from unetlab.models import SegmentationModel, build_model, is_valid_input_size, list_models
from unetlab.models.summary import summarize

DEFAULT_SIDE = 512


def _load(model: str, classes: int, channels: int, options: dict) -> nn.Module:
    if model in list_models():
        return build_model(model, classes, in_channels=channels, **options)
    if Path(model).exists():
        from unetlab.artifacts.read import load_network

        return load_network(model)[1]
    raise UnetlabError(
        f"'{model}' is neither a model name nor an existing checkpoint or run folder",
        hint=f"model names: {', '.join(list_models())}",
    )


def _default_side(model: nn.Module) -> int:
    """512, or for a valid-padding U-Net the smallest legal side from 512 up."""
    side = DEFAULT_SIDE
    if getattr(model, "padding", "same") == "valid":
        depth = int(getattr(model, "depth", 4))
        while not is_valid_input_size(side, depth):
            side += 1
    return side


def describe_models(names: list[str]) -> str:
    """One line per model: its name, what it is, and its options with their defaults."""
    from unetlab.models.registry import get_entry

    lines = []
    for name in names:
        entry = get_entry(name)
        lines.append(f"{name}: {entry.summary}")
        lines.append(f"  options: {entry.describe_options()}")
    return "\n".join(lines)


@click.command("summary", epilog=f"Models: {', '.join(list_models())}.")
@click.argument("model", required=False)
@click.option("--input", "input_size", metavar="CxHxW", help="Input size (default: 3x512x512).")
@model_option_flags()
@click.option("--line", is_flag=True, help="Print only a one-line summary.")
def summary(
    model: str | None,
    input_size: str | None,
    classes: int | None,
    options: tuple[str, ...],
    line: bool,
) -> None:
    """Show the layers, parameters and forward GFLOPs of MODEL, and its options.

    MODEL is a model name (listed below), a checkpoint file or a run folder; without MODEL
    every model is listed with its options. Options go to the model builder, e.g. -o base=32
    -o padding=valid for unet (in a config: model.options).
    """
    if model is None:
        click.echo(describe_models(list_models()))
        return
    size = parse_shape(input_size)
    is_name = model in list_models()
    if not is_name and (classes is not None or options):
        raise click.UsageError("--classes and --option apply to a model name; a checkpoint "
                               "already records them")  # fmt: skip
    net = _load(model, classes or 2, size[0] if size else 3, parse_options(options))
    in_channels = getattr(net, "in_channels", 3)
    if size and size[0] != in_channels:
        raise UnetlabError(
            f"--input has {size[0]} channels but the checkpoint's model takes {in_channels}",
            model,
            f"use --input {in_channels}x{size[1]}x{size[2]}",
        )
    shape = size or (in_channels, *(_default_side(net),) * 2)
    if isinstance(net, SegmentationModel):
        try:
            net.check_input(torch.empty((1, *shape), device="meta"))
        except UnetlabError as exc:
            raise UnetlabError(
                f"--input {'x'.join(map(str, shape))} does not fit this model: {exc.message}",
                hint="pass an --input size from the message",
            ) from None
    result = summarize(net, shape)
    if line:
        click.echo(result.line())
        return
    click.echo(str(result))
    if is_name:
        click.echo(describe_models([model]))
