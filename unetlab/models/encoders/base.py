"""What an encoder promises the decoder and the pretrained-weight loader."""

from __future__ import annotations

import torch
from torch import nn


class Encoder(nn.Module):
    """A classification backbone cut into feature levels.

    ``forward(x)`` returns one feature map per level, shallowest first. Submodules carry
    torchvision's names, so a torchvision ImageNet state dict loads with the keys unchanged
    (what :func:`unetlab.models.pretrained.load_encoder_weights` relies on).

    Class attributes describe all five levels; an instance built with a smaller ``depth`` keeps
    only the first ``depth`` of them (``channels`` and ``strides`` are trimmed to match).

    Attributes:
        name: registry name (``vgg16``, ``resnet50``, ``mobilenet_v2``).
        channels: channels of each returned level.
        strides: downsampling factor of each returned level relative to the input.
        first_conv: state-dict key of the first conv's weight (adapted when
            ``in_channels != 3``).
        head_prefixes: torchvision keys of the classifier, never part of an encoder.
    """

    name: str = ""
    channels: tuple[int, ...] = ()
    strides: tuple[int, ...] = ()
    first_conv: str = ""
    head_prefixes: tuple[str, ...] = ()
    weights_url: str = ""

    def __init__(self, in_channels: int = 3, depth: int = 5):
        super().__init__()
        if not 1 <= depth <= len(type(self).channels):
            raise ValueError(f"{self.name} encoder depth must be 1..{len(type(self).channels)}")
        self.in_channels = in_channels
        self.depth = depth
        self.channels = type(self).channels[:depth]
        self.strides = type(self).strides[:depth]

    @property
    def output_stride(self) -> int:
        """Stride of the deepest level: input sides must be multiples of it."""
        return self.strides[-1]

    def unused_prefixes(self) -> tuple[str, ...]:
        """torchvision key prefixes this instance does not build (classifier, cut levels)."""
        return self.head_prefixes

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError
