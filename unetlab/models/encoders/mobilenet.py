"""MobileNetV2 (Sandler et al. 2018) as a U-Net encoder, laid out like torchvision's.

``features.0`` is a conv-BN-ReLU6 stem, ``features.1`` .. ``features.17`` are inverted residual
blocks (each a ``conv`` sequential), ``features.18`` the final 1x1 conv to 1280 channels; the
indices and inner names match torchvision's ``mobilenet_v2`` (width 1.0). Levels (as in SMP):
strides 2, 4, 8, 16, 32 with 16, 24, 32, 96, 1280 channels.
"""

from __future__ import annotations

import torch
from torch import nn

from unetlab.models.encoders.base import Encoder

# (expansion t, output channels c, repeats n, first stride s), the paper's Table 2
INVERTED_RESIDUAL_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
LEVEL_ENDS = (2, 4, 7, 14, 19)  # ``features`` index after each level's last block


def conv_bn_relu6(
    in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    """torchvision's ``Conv2dNormActivation``: keys ``.0`` (conv) and ``.1`` (BN)."""
    return nn.Sequential(
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding=(kernel_size - 1) // 2,
            groups=groups,
            bias=False,
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """1x1 expand (skipped when t = 1), 3x3 depthwise, 1x1 linear projection, + identity."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_channels * expansion
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(conv_bn_relu6(in_channels, hidden, kernel_size=1))
        layers += [
            conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2Encoder(Encoder):
    """MobileNetV2 ``features`` cut at the end of each stride."""

    name = "mobilenet_v2"
    channels = (16, 24, 32, 96, 1280)
    strides = (2, 4, 8, 16, 32)
    first_conv = "features.0.0.weight"
    head_prefixes = ("classifier.",)
    weights_url = "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth"

    def __init__(self, in_channels: int = 3, depth: int = 5):
        super().__init__(in_channels, depth)
        layers: list[nn.Module] = [conv_bn_relu6(in_channels, 32, stride=2)]
        channels = 32
        for expansion, out_channels, repeats, stride in INVERTED_RESIDUAL_SETTINGS:
            for i in range(repeats):
                layers.append(
                    InvertedResidual(channels, out_channels, stride if i == 0 else 1, expansion)
                )
                channels = out_channels
        layers.append(conv_bn_relu6(channels, 1280, kernel_size=1))
        self.level_ends = LEVEL_ENDS[:depth]
        self.features = nn.Sequential(*layers[: self.level_ends[-1]])

    def unused_prefixes(self) -> tuple[str, ...]:
        cut = self.level_ends[-1]
        return self.head_prefixes + tuple(f"features.{i}." for i in range(cut, 19))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        levels, start = [], 0
        for end in self.level_ends:
            x = self.features[start:end](x)
            levels.append(x)
            start = end
        return levels
