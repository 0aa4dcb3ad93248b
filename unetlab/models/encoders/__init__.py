"""Encoder registry: name -> class (its level channels, strides and torchvision weights URL).

Every encoder keeps torchvision's module names, so torchvision's ImageNet checkpoints load
into it with the keys unchanged (see :mod:`unetlab.models.pretrained`).
"""

from __future__ import annotations

from unetlab.errors import UnetlabError
from unetlab.models.encoders.base import Encoder
from unetlab.models.encoders.mobilenet import MobileNetV2Encoder
from unetlab.models.encoders.resnet import ResNet50Encoder
from unetlab.models.encoders.vgg import VGG16Encoder

ENCODERS: dict[str, type[Encoder]] = {
    cls.name: cls for cls in (VGG16Encoder, ResNet50Encoder, MobileNetV2Encoder)
}


def build_encoder(name: str, in_channels: int = 3, depth: int = 5) -> Encoder:
    """An encoder by registry name, with ``depth`` feature levels (1..5)."""
    try:
        cls = ENCODERS[name]
    except KeyError:
        raise UnetlabError(
            f"unknown encoder '{name}'", hint=f"choose one of: {', '.join(sorted(ENCODERS))}"
        ) from None
    return cls(in_channels=in_channels, depth=depth)


__all__ = [
    "ENCODERS",
    "Encoder",
    "MobileNetV2Encoder",
    "ResNet50Encoder",
    "VGG16Encoder",
    "build_encoder",
]
