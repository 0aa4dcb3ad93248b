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
