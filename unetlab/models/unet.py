"""The classic U-Net (Ronneberger, Fischer & Brox, MICCAI 2015).

``depth`` poolings, widths ``base * 2**i`` (64 .. 1024 for base 64, depth 4), two 3x3 convs per
level, 2x2 max pooling, an up-convolution per decoder level, skips concatenated, a 1x1 head.
Beyond the paper: optional batch norm (on by default, as in milesial/Pytorch-UNet, whose
``UNet(3, 2, bilinear=False)`` this reproduces parameter for parameter), same padding (output =
input size), bilinear upsampling and the Keras version's dropout (zhixuhao/unet: before the
deepest pooling and at the bottleneck).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import torch
from pydantic import Field
from torch import nn

from unetlab.models.base import DeepSupervision, SegmentationModel
from unetlab.models.blocks import ConvBlock, Padding, UpBlock, init_he
from unetlab.models.registry import register_model


class UNet(SegmentationModel):
    """U-Net with configurable width, depth, padding, upsampling, batch norm and dropout."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        *,
        base: int = 64,
        depth: int = 4,
        padding: Padding = "same",
        up: Literal["transpose", "bilinear"] = "transpose",
        batch_norm: bool = True,
        dropout: float = 0.0,
        deep_supervision: int = 0,
    ):
        super().__init__()
        self.in_channels, self.depth, self.padding = in_channels, depth, padding
        self.size_multiple = 2**depth
        widths = [base * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList(
            ConvBlock(c_in, c_out, padding=padding, batch_norm=batch_norm)
            for c_in, c_out in zip([in_channels, *widths[:-1]], widths, strict=True)
        )  # down[depth] is the bottleneck
        self.pool = nn.MaxPool2d(2)
        self.drop_skip = nn.Dropout(dropout) if dropout else nn.Identity()
        self.drop_bottleneck = nn.Dropout(dropout) if dropout else nn.Identity()
        self.up = nn.ModuleList(
            UpBlock(
                widths[i + 1],
                widths[i],
                widths[i],
                up=up,
                up_channels=widths[i],
                padding=padding,
                batch_norm=batch_norm,
            )
            for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=1)
        self.attach_aux_heads(widths[depth - 1 :: -1], deep_supervision, num_classes)
        init_he(self)

    def forward(self, x: torch.Tensor, aux: bool = False) -> Any:
        """Logits; with ``aux`` (training with deep supervision) also the auxiliary ones."""
        self.check_input(x)
        skips = []
        for level, block in enumerate(self.down[:-1]):
            x = block(x)
            if level == self.depth - 1:  # the deepest skip level: Keras drop4
                x = self.drop_skip(x)
            skips.append(x)
            x = self.pool(x)
        x = self.drop_bottleneck(self.down[-1](x))
        stages = []
        for block, skip in zip(self.up, reversed(skips), strict=True):
            x = block(x, skip)
            if aux:
                stages.append(x)
        return self.outputs(self.head(x), stages, aux)


@register_model("unet")
def unet(
    num_classes: int,
    in_channels: int = 3,
    *,
    base: Annotated[int, Field(ge=1)] = 64,
    depth: Annotated[int, Field(ge=1, le=8)] = 4,
    padding: Literal["same", "valid"] = "same",
    up: Literal["transpose", "bilinear"] = "transpose",
    batch_norm: bool = True,
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0,
    deep_supervision: DeepSupervision = 0,
) -> UNet:
    """Classic 2015 U-Net (base 64, depth 4: 64..1024 channels); same or valid padding;
    ``deep_supervision`` > 0 adds auxiliary heads on that many decoder stages (training only)."""
    return UNet(
        num_classes,
        in_channels,
        base=base,
        depth=depth,
        padding=padding,
        up=up,
        batch_norm=batch_norm,
        dropout=dropout,
        deep_supervision=deep_supervision,
    )
