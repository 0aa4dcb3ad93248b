"""Options and value parsers shared by several commands, declared once.

Nothing here imports torch: ``predict`` of an ``.onnx`` file runs without it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

# the choices of unetlab.inference.precision.PRECISIONS, repeated because that module imports
# torch and `predict --backend onnx` must run without it (a test keeps the two equal)
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
BACKENDS = ("auto", "torch", "onnx")  # unetlab.inference.open.BACKENDS (a test keeps them equal)


def precision_option(scope: str) -> Callable[[F], F]:
    """``--precision`` for commands that run a checkpoint; ``scope`` says where it applies."""
    return click.option(
        "--precision",
        default="fp32",
        show_default=True,
        type=click.Choice(PRECISIONS),
        help=f"{scope}: bf16/fp16 autocast, or auto (bf16 where the CPU/GPU computes it "
        "natively: about 3x faster on CPUs with AMX); measure its cost with evaluate.",
    )


def device_option() -> Callable[[F], F]:
    return click.option(
        "--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."
    )


def backend_option() -> Callable[[F], F]:
    return click.option(
        "--backend",
        default="auto",
        show_default=True,
        type=click.Choice(BACKENDS),
        help="auto: onnx for an exported .onnx file (no torch needed), torch otherwise.",
    )


def threshold_option() -> Callable[[F], F]:
    """``--threshold``: the same range and meaning for predict and evaluate."""
    return click.option(
        "--threshold",
        default=None,
        type=click.FloatRange(0, 1, min_open=True, max_open=True),
        help="Foreground probability cut of binary models (one sigmoid or two softmax "
        "channels) [0.5, or the value stored in an .onnx file]; refused for multi-class models.",
    )


def tta_options() -> Callable[[F], F]:
    """``--tta/--no-tta`` and ``--tta-rot90``; read them with :func:`tta_mode`."""

    def decorate(function: F) -> F:
        function = click.option(
            "--tta-rot90", is_flag=True, help="With --tta: add the 90-degree rotations (8x)."
        )(function)
        return click.option(
            "--tta/--no-tta", default=None,
            help="Average over flipped copies (4x slower), or not. Default: the model's "
            "own choice (its run's inference.tta; off unless its plan chose it).",
        )(function)

    return decorate


def tta_mode(tta: bool | None, tta_rot90: bool) -> bool | str | None:
    """The ``tta`` value of the Python API for the two flags."""
    from unetlab.inference.tta import mode_from_flags

    return mode_from_flags(tta, tta_rot90)


def tiling_options() -> Callable[[F], F]:
    """``--tile``, ``--overlap`` and ``--tile-weights``: how predict (and evaluate, which scores
    what predict writes) cut large images."""

    def decorate(function: F) -> F:
        function = click.option(
            "--tile-weights",
            default="gaussian",
            show_default=True,
            type=click.Choice(["gaussian", "linear", "constant"]),
            help="How overlapping tiles are blended.",
        )(function)
        function = click.option(
            "--overlap",
            default=0.25,
            show_default=True,
            type=click.FloatRange(0, 0.9),
            help="Fraction of a tile shared with its neighbours.",
        )(function)
        return tile_option()(function)

    return decorate


def tile_option() -> Callable[[F], F]:
    """``--tile`` alone, for a command that tiles as predict does but lets the rest be
    (serve)."""
    return click.option(
        "--tile",
        default=512,
        show_default=True,
        type=click.IntRange(16),
        help="Network input side; larger images are predicted in overlapping tiles.",
    )


def postprocessing_options() -> Callable[[F], F]:
    """``--min-size``, ``--keep-largest``, ``--fill-holes`` and ``--no-postprocessing``: what
    predict and evaluate do to the labels (:mod:`unetlab.inference.postprocessing`); read them
    with :func:`postprocessing_from`."""

    def decorate(function: F) -> F:
        function = click.option(
            "--no-postprocessing",
            is_flag=True,
            help="Ignore the post-processing stored with the model.",
        )(function)
        function = click.option(
            "--fill-holes",
            is_flag=False,
            flag_value="all",
            default=None,
            metavar="[CLASSES]",
            help="Background pixels enclosed by one of these classes (names or indices, "
            "comma-separated; alone: every class but 0) take that class.",
        )(function)
        function = click.option(
            "--keep-largest",
            default=None,
            metavar="CLASSES",
            help="Keep only the largest region of these classes (names or indices, "
            "comma-separated, or 'all' = every class but 0).",
        )(function)
        return click.option(
            "--min-size",
            type=click.IntRange(min=0),
            default=None,
            metavar="PIXELS",
            help="Remove regions (4-connected, any class) smaller than this; each takes the "
            "label it shares the longest border with. Any of these three options replaces "
            "the post-processing stored with the model.",
        )(function)

    return decorate


def postprocessing_from(
    min_size: int | None, keep_largest: str | None, fill_holes: str | None, no_postprocessing: bool
) -> Any:
    """The ``postprocessing`` value of the Python API for the four options (None: the stored
    one)."""
    from unetlab.inference.postprocessing import from_flags

    return from_flags(min_size, keep_largest, fill_holes, no_postprocessing)


def batch_size_option(what: str) -> Callable[[F], F]:
    return click.option(
        "--batch-size",
        default=1,
        show_default=True,
        type=click.IntRange(1),
        help=f"{what} per forward pass (raise it on a GPU; on a CPU it mostly costs memory).",
    )


def overwrite_option(
    text: str = "Replace output files that exist already (never done without it).",
) -> Callable[[F], F]:
    """``--overwrite``: the one way a command replaces a file it did not create
    (:mod:`unetlab.fs.atomic`); ``text``, its help, where a command says which files."""
    return click.option("--overwrite", is_flag=True, help=text)


def parse_shape(text: str | None, param: str = "--input") -> tuple[int, int, int] | None:
    """``CxHxW`` (e.g. ``3x512x512``) -> ``(C, H, W)`` with positive numbers."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or any(int(v) == 0 for v in match.groups()):
        raise click.BadParameter(
            f"'{text}' is not a size; write CxHxW with positive numbers, e.g. 3x512x512",
            param_hint=param,
        )
    channels, height, width = map(int, match.groups())
    return channels, height, width


def parse_options(items: tuple[str, ...]) -> dict[str, Any]:
    """``key=value`` pairs; values read as YAML scalars (``32`` -> int, ``false`` -> bool)."""
    import yaml

    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(
                f"'{item}' is not key=value, e.g. base=32", param_hint="--option"
            )
        options[key.strip()] = yaml.safe_load(value) if value.strip() else None
    return options


def model_option_flags() -> Callable[[F], F]:
    """``--classes`` and ``-o/--option`` for commands that also take a model name."""

    def decorate(function: F) -> F:
        function = click.option(
            "-o",
            "--option",
            "options",
            multiple=True,
            metavar="KEY=VALUE",
            help="For a model name: a model option (repeatable), e.g. -o base=32.",
        )(function)
        return click.option(
            "--classes",
            type=click.IntRange(min=1),
            default=None,
            help="For a model name: output channels [2].",
        )(function)

    return decorate


def _apply_threads(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    from unetlab.threads import configure_threads

    configure_threads(value)
    return value


def threads_option(command: F) -> F:
    """``--threads N`` for commands that compute on the CPU: applied while the command line is
    parsed, before the command imports torch, so idle threads sleep even without the option
    (see :mod:`unetlab.threads`). The command gets the value as ``threads`` (ONNX Runtime
    sessions take it too)."""
    return click.option(
        "--threads",
        type=click.IntRange(min=1),
        default=None,
        is_eager=True,
        callback=_apply_threads,
        help="CPU threads for torch and ONNX Runtime [default: one per core]. Idle threads "
        "always sleep instead of spinning (OMP_WAIT_POLICY=PASSIVE unless you set it).",
    )(command)
