"""The two building blocks every decoder in the family is made of.

- :class:`ConvBlock`: ``num_convs`` x (3x3 conv [+ BN] + ReLU), same or valid padding.
- :class:`UpBlock`: upsample x2 (2x2 transposed conv, or bilinear [+ 1x1 conv]), concatenate the
  encoder skip (centre-cropped when valid convs made it larger), then a :class:`ConvBlock`.
  With same padding the skip already has the upsampled size, so no crop is built at all: the
  exported ONNX graph then has no Shape/Slice arithmetic per skip (2% of ONNX Runtime's time at
  512 px).

The classic U-Net, the VGG16/ResNet-50 decoders (two convs, no BN, as in bubbliiiing's
unet-pytorch) and the MobileNet decoder (one conv + BN, as in image-segmentation-keras) are all
parameter settings of these two classes.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

Padding = Literal["same", "valid"]
UpMode = Literal["transpose", "bilinear", "none"]


class ConvBlock(nn.Sequential):
    """``num_convs`` x (3x3 conv, optional batch norm, ReLU).

    With batch norm the convs have no bias (BN's shift replaces it). ``padding="valid"`` trims
    one pixel per side per conv, as in the 2015 paper.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        num_convs: int = 2,
        padding: Padding = "same",
        batch_norm: bool = True,
    ):
        layers: list[nn.Module] = []
        for i in range(num_convs):
            conv_in = in_channels if i == 0 else out_channels
            pad = 1 if padding == "same" else 0
            layers.append(nn.Conv2d(conv_in, out_channels, 3, padding=pad, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


def center_crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Central ``height x width`` window of ``x`` (how the paper matches a valid skip)."""
    top = (x.shape[-2] - height) // 2
    left = (x.shape[-1] - width) // 2
    return x[..., top : top + height, left : left + width]


class UpBlock(nn.Module):
    """Upsample x2, concatenate an encoder skip, then convolve.

    Args:
        in_channels: channels of the deeper feature map.
        skip_channels: channels of the skip connection (0: no skip).
        out_channels: channels after the convs.
        up: ``transpose`` (2x2 transposed conv, stride 2), ``bilinear`` (bilinear x2, then a 1x1
            conv if ``up_channels`` differs from ``in_channels``) or ``none`` (no upsampling).
        up_channels: channels after upsampling; defaults to ``in_channels // 2`` for
            ``transpose`` and ``in_channels`` otherwise.
        num_convs, padding, batch_norm: passed to :class:`ConvBlock`.
    """

    def __init__(
        self,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        *,
        up: UpMode = "transpose",
        up_channels: int | None = None,
        num_convs: int = 2,
        padding: Padding = "same",
        batch_norm: bool = True,
    ):
        super().__init__()
        if up_channels is None:
            up_channels = in_channels // 2 if up == "transpose" else in_channels
        self.up: nn.Module
        if up == "transpose":
            self.up = nn.ConvTranspose2d(in_channels, up_channels, kernel_size=2, stride=2)
        elif up == "bilinear":
            resize = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
            if up_channels == in_channels:
                self.up = resize
            else:  # size-neutral 1x1 conv: same and valid arithmetic stay identical
                self.up = nn.Sequential(resize, nn.Conv2d(in_channels, up_channels, 1))
        elif up == "none":
            if up_channels != in_channels:
                raise ValueError("up='none' cannot change the channel count")
            self.up = nn.Identity()
        else:
            raise ValueError(f"unknown up mode {up!r}")
        self.crop_skip = padding == "valid"
        self.conv = ConvBlock(
            up_channels + skip_channels,
            out_channels,
            num_convs=num_convs,
            padding=padding,
            batch_norm=batch_norm,
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = self.up(x)
        if skip is not None:
            if self.crop_skip:
                skip = center_crop(skip, *x.shape[-2:])
            x = torch.cat([skip, x], dim=1)
        return self.conv(x)


def init_he(module: nn.Module) -> None:
    """He (kaiming) normal init for convs, as the paper prescribes (std = sqrt(2 / fan_in));
    zero biases, BN at identity. Applied to freshly built layers only, never to a pretrained
    encoder."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
