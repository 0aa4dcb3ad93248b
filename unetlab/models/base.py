"""What every model of the family shares: its size rule and the input check that enforces it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from unetlab.errors import UnetlabError
from unetlab.models.blocks import init_he
from unetlab.models.padding import check_size, is_valid_input_size, valid_output_size

DeepSupervision = Annotated[int, Field(ge=0)]
"""The ``deep_supervision`` option of every builder: auxiliary heads on that many decoder stages
above the last (training only); :meth:`SegmentationModel.attach_aux_heads` checks the upper
bound, which depends on the architecture."""

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

    def _aux_heads(self) -> nn.ModuleList | None:
        """The deep-supervision heads, finest first (None: none attached)."""
        heads = self._modules.get("aux_heads")
        return heads if isinstance(heads, nn.ModuleList) else None

    @property
    def aux_levels(self) -> int:
        """How many decoder stages carry an auxiliary head (deep supervision; 0: none)."""
        heads = self._aux_heads()
        return 0 if heads is None else len(heads)

    def training_only_modules(self) -> list[nn.Module]:
        """Modules that only training runs (the deep-supervision heads): a summary counts the
        deployed network without them, as inference and export see it."""
        heads = self._aux_heads()
        return [] if heads is None else [heads]

    def attach_aux_heads(
        self, stage_channels: Sequence[int], levels: int, num_classes: int
    ) -> None:
        """Deep supervision (nnU-Net, after Lee et al. 2015): 1x1 heads on the ``levels``
        decoder stages just above the last one, so gradients reach the deep decoder directly.

        ``stage_channels`` are the decoder stages' output channels, deepest first. The heads
        only run when ``forward(x, aux=True)`` asks for them (training); inference and export
        see the plain logits, so a model trained this way predicts like any other.
        """
        if levels == 0:
            return
        if self.padding == "valid":
            raise UnetlabError(
                "deep supervision needs same padding: valid convolutions crop every decoder "
                "stage by a different margin, so its outputs do not align with the mask",
                hint="set model.options.padding=same or model.options.deep_supervision=0",
            )
        above_last = list(stage_channels[:-1])
        if levels > len(above_last):
            raise UnetlabError(
                f"deep_supervision={levels} asks for more auxiliary heads than the "
                f"{len(above_last)} decoder stages above the last one",
                hint=f"use at most {len(above_last)}",
            )
        finest_first = list(reversed(above_last))[:levels]
        with torch.random.fork_rng(devices=[]):  # the main network's initial weights stay
            torch.manual_seed(torch.initial_seed() + 1)  # those of the same seed without heads
            heads = nn.ModuleList(nn.Conv2d(c, num_classes, 1) for c in finest_first)
            init_he(heads)
        self.add_module("aux_heads", heads)

    def outputs(
        self, logits: torch.Tensor, stages: Sequence[torch.Tensor], aux: bool
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """What ``forward`` returns: the logits, or with ``aux`` also the auxiliary heads'
        logits (finest first), resized bilinearly to the logits' size so that every level is
        scored against the same full-resolution mask, weight map and ignore index."""
        if not aux:
            return logits
        heads = self._aux_heads()
        if heads is None:
            raise UnetlabError(
                "forward(aux=True) on a model without auxiliary heads",
                hint="build it with the model option deep_supervision > 0",
            )
        finest_first = list(reversed(stages[:-1]))
        side = [
            F.interpolate(head(x), size=logits.shape[-2:], mode="bilinear", align_corners=False)
            for head, x in zip(heads, finest_first, strict=False)
        ]
        return logits, side

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
