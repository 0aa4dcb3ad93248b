"""ResNet-50 (He et al. 2016) as a U-Net encoder, laid out like torchvision's ``resnet50``.

Module names (``conv1``, ``bn1``, ``layer1`` .. ``layer4`` of :class:`Bottleneck` blocks with
``conv1..3``, ``bn1..3`` and ``downsample``) match torchvision, so its checkpoints load with the
keys unchanged. The stride sits in the 3x3 conv (torchvision's "v1.5"). Levels: the stem
(stride 2, 64 channels) and the four stages (strides 4, 8, 16, 32; 256, 512, 1024, 2048).
"""

from __future__ import annotations

import torch
from torch import nn

from unetlab.models.encoders.base import Encoder


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand x4, plus the (projected) identity."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1):
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50Encoder(Encoder):
    """ResNet-50 without its pooling head: stem + layer1..layer4."""

    name = "resnet50"
    channels = (64, 256, 512, 1024, 2048)
    strides = (2, 4, 8, 16, 32)
    first_conv = "conv1.weight"
    head_prefixes = ("fc.",)
    weights_url = "https://download.pytorch.org/models/resnet50-0676ba61.pth"
    blocks_per_stage = (3, 4, 6, 3)

    def __init__(self, in_channels: int = 3, depth: int = 5):
        super().__init__(in_channels, depth)
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        channels = 64
        for stage in range(1, depth):
            planes, blocks = 64 * 2 ** (stage - 1), self.blocks_per_stage[stage - 1]
            layers = [Bottleneck(channels, planes, stride=1 if stage == 1 else 2)]
            channels = planes * Bottleneck.expansion
            layers += [Bottleneck(channels, planes) for _ in range(blocks - 1)]
            self.add_module(f"layer{stage}", nn.Sequential(*layers))

    def unused_prefixes(self) -> tuple[str, ...]:
        return self.head_prefixes + tuple(f"layer{i}." for i in range(self.depth, 5))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        levels = [x]
        x = self.maxpool(x)
        for stage in range(1, self.depth):
            x = getattr(self, f"layer{stage}")(x)
            levels.append(x)
        return levels
