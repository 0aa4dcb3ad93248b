"""VGG16 (Simonyan & Zisserman 2015) as a U-Net encoder, laid out like torchvision's ``vgg16``.

``features`` is torchvision's ``nn.Sequential`` of 3x3 conv + ReLU with max pools in between;
its indices (``features.0`` .. ``features.28``) are the checkpoint keys. The five levels are
the activations before each pooling (bubbliiiing's feat1..feat5): strides 1, 2, 4, 8, 16 with
64, 128, 256, 512, 512 channels. The final pool and the classifier are not needed.
"""

from __future__ import annotations

import torch
from torch import nn

from unetlab.models.encoders.base import Encoder

# channels per conv, "M" = 2x2 max pool (torchvision's configuration "D")
VGG16_LAYOUT: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512,
)  # fmt: skip


class VGG16Encoder(Encoder):
    """VGG16 ``features`` cut before each max pool."""

    name = "vgg16"
    channels = (64, 128, 256, 512, 512)
    strides = (1, 2, 4, 8, 16)
    first_conv = "features.0.weight"
    head_prefixes = ("classifier.",)
    weights_url = "https://download.pytorch.org/models/vgg16-397923af.pth"

    def __init__(self, in_channels: int = 3, depth: int = 5):
        super().__init__(in_channels, depth)
        layers: list[nn.Module] = []
        self.level_ends: list[int] = []  # index in ``features`` after each level's last ReLU
        channels, pools = in_channels, 0
        for item in VGG16_LAYOUT:
            if isinstance(item, str):  # "M"
                self.level_ends.append(len(layers))
                pools += 1
                if pools == depth:
                    break
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, item, kernel_size=3, padding=1), nn.ReLU(True)]
                channels = item
        else:
            self.level_ends.append(len(layers))
        self.features = nn.Sequential(*layers)

    def unused_prefixes(self) -> tuple[str, ...]:
        cut = self.level_ends[-1]
        return self.head_prefixes + tuple(f"features.{i}." for i in range(cut, 31))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        levels, start = [], 0
        for end in self.level_ends:
            x = self.features[start:end](x)
            levels.append(x)
            start = end
        return levels
