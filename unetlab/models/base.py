"""What every model of the family shares: its size rule and the input check that enforces it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from unetlab.errors import UnetlabError
from unetlab.models.padding import check_size, is_valid_input_size, valid_output_size

if TYPE_CHECKING:
    from unetlab.models.pretrained import LoadReport


def _tracing() -> bool:
    """True while a model is traced or exported: shape checks would be baked into the graph
    (or fight symbolic sizes), so they are skipped there."""
    return (
        torch.jit.is_tracing()
        or torch.compiler.is_compiling()
        or torch.compiler.is_exporting()
        or torch.onnx.is_in_onnx_export()
    )


class SegmentationModel(nn.Module):
    """Base of all architectures: ``forward`` maps ``N x C x H x W`` to logits.

    Attributes:
        size_multiple: input sides must be multiples of it (``2**depth`` or the encoder's
            deepest stride).
        padding: ``same`` (output = input size) or ``valid`` (output smaller, see
            :mod:`unetlab.models.padding`).
        depth: number of poolings; with ``padding == "valid"`` it fixes the size arithmetic.
        spec: how :func:`~unetlab.models.build_model` built it (name, num_classes,
            in_channels, options): what a checkpoint stores to rebuild it.
        pretrained_report, init_report: what loading encoder or whole-model weights matched
            (None when no weights were loaded).
    """

    size_multiple: int = 1
    padding: str = "same"
    depth: int = 0
    in_channels: int = 3
    spec: dict[str, Any]
    pretrained_report: LoadReport | None = None
    init_report: LoadReport | None = None

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Output ``(H', W')`` for a legal input size."""
        if self.padding == "valid":
            return valid_output_size(height, self.depth), valid_output_size(width, self.depth)
        return height, width

    def check_input(self, x: torch.Tensor) -> None:
        """Refuse a batch the network cannot map exactly, with the nearest legal sizes."""
        if _tracing():
            return
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise UnetlabError(
                f"expected an N x {self.in_channels} x H x W batch, got shape {tuple(x.shape)}",
                hint="images must have as many channels as the model's in_channels",
            )
        h, w = x.shape[-2:]
        if self.padding == "valid":
            for side in (h, w):
                if not is_valid_input_size(side, self.depth):
                    valid_output_size(side, self.depth)  # raises with the nearest legal sizes
        else:
            check_size(h, w, self.size_multiple)
