"""Options shared by several commands, declared once."""

from __future__ import annotations

import click

# the choices of unetlab.inference.precision.PRECISIONS, repeated because that module imports
# torch and `predict --backend onnx` must run without it (a test keeps the two equal)
PRECISIONS = ("fp32", "bf16", "fp16", "auto")


def precision_option(scope: str):
    """``--precision`` for commands that run a checkpoint; ``scope`` says where it applies."""
    return click.option(
        "--precision",
        default="fp32",
        show_default=True,
        type=click.Choice(PRECISIONS),
        help=f"{scope}: bf16/fp16 autocast, or auto (bf16 where the CPU/GPU computes it "
        "natively: about 3x faster on CPUs with AMX); measure its cost with evaluate.",
    )


def _apply_threads(ctx: click.Context, param: click.Parameter, value: int | None) -> None:
    from unetlab.threads import configure_threads

    configure_threads(value)


def threads_option(command):
    """``--threads N`` for commands that compute on the CPU: applied while the command line is
    parsed, before the command imports torch, so idle threads sleep even without the option
    (see :mod:`unetlab.threads`)."""
    return click.option(
        "--threads",
        type=click.IntRange(min=1),
        default=None,
        expose_value=False,
        is_eager=True,
        callback=_apply_threads,
        help="CPU threads for torch [default: one per core]. Idle threads always sleep "
        "instead of spinning (OMP_WAIT_POLICY=PASSIVE unless you set it).",
    )(command)
