"""U-Nets on a classification backbone: one generic :class:`EncoderUNet` and three builders.

An encoder returns feature levels (shallowest first); a decoder *spec* says, stage by stage,
how many channels to produce, which level to concatenate and whether to upsample first. A 1x1
head gives the logits, bilinearly resized to the input size if the decoder stopped short.

- ``vgg16_unet`` and ``resnet50_unet`` follow bubbliiiing's unet-pytorch: bilinear x2, concat
  the skip, two 3x3 conv + ReLU (512, 256, 128, 64); ResNet-50's shallowest level is at stride
  2, so one more up block without a skip brings it to the input size.
- ``mobilenet_unet`` follows image-segmentation-keras's ``mobilenet_unet`` decoder (one 3x3
  conv + BN per stage, 512 -> 256 -> 128 -> 64, starting from the stride-16 level, with an
  optional level-1 skip) on a MobileNetV2 encoder; its stride-2 logits are upsampled x2.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from unetlab.models.base import DeepSupervision, SegmentationModel
from unetlab.models.blocks import UpBlock, init_he
from unetlab.models.encoders import Encoder, build_encoder
from unetlab.models.pretrained import load_encoder_weights
from unetlab.models.registry import register_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecoderStage:
    """One decoder stage: optional x2 upsampling, optional skip, then convs."""

    out_channels: int
    skip: int | None  # encoder level concatenated after upsampling; None: no skip
    upsample: bool = True


class EncoderUNet(SegmentationModel):
    """Encoder + decoder stages + 1x1 head; logits at the input size.

    Args:
        encoder: feature extractor (its ``depth`` levels are all computed).
        stages: decoder spec, deepest first.
        num_classes: output channels.
        start_level: encoder level the decoder starts from (default: the deepest).
        num_convs, batch_norm: conv block of every stage (see :class:`~.blocks.ConvBlock`).
    """

    def __init__(
        self,
        encoder: Encoder,
        stages: Sequence[DecoderStage],
        num_classes: int,
        *,
        start_level: int | None = None,
        num_convs: int = 2,
        batch_norm: bool = False,
        deep_supervision: int = 0,
    ):
        super().__init__()
        self.encoder = encoder
        self.in_channels = encoder.in_channels
        self.size_multiple = encoder.output_stride
        self.stages = tuple(stages)
        self.start_level = encoder.depth - 1 if start_level is None else start_level
        channels = encoder.channels[self.start_level]
        stride = encoder.strides[self.start_level]
        blocks = []
        for stage in self.stages:
            stride //= 2 if stage.upsample else 1
            if stage.skip is not None and encoder.strides[stage.skip] != stride:
                raise ValueError(f"stage {stage} concatenates a level of another stride")
            skip_channels = 0 if stage.skip is None else encoder.channels[stage.skip]
            blocks.append(
                UpBlock(
                    channels,
                    skip_channels,
                    stage.out_channels,
                    up="bilinear" if stage.upsample else "none",
                    num_convs=num_convs,
                    batch_norm=batch_norm,
                )
            )
            channels = stage.out_channels
        self.decoder = nn.ModuleList(blocks)
        self.head = nn.Conv2d(channels, num_classes, kernel_size=1)
        self.head_stride = stride  # logits are resized by this factor
        self.attach_aux_heads([s.out_channels for s in self.stages], deep_supervision, num_classes)
        init_he(self.decoder)
        init_he(self.head)

    def forward(self, x: torch.Tensor, aux: bool = False) -> Any:
        """Logits; with ``aux`` (training with deep supervision) also the auxiliary ones."""
        self.check_input(x)
        levels = self.encoder(x)
        y = levels[self.start_level]
        stages = []
        for stage, block in zip(self.stages, self.decoder, strict=True):
            y = block(y, None if stage.skip is None else levels[stage.skip])
            if aux:
                stages.append(y)
        y = self.head(y)
        if self.head_stride > 1:
            y = F.interpolate(
                y, scale_factor=self.head_stride, mode="bilinear", align_corners=False
            )
        return self.outputs(y, stages, aux)


def _with_weights(model: EncoderUNet, pretrained: str | Path | None) -> EncoderUNet:
    """Load encoder weights if asked (``imagenet``: torchvision's checkpoint for the encoder)."""
    if pretrained:
        source = model.encoder.weights_url if pretrained == "imagenet" else pretrained
        model.pretrained_report = load_encoder_weights(model, source)
        log.info("%s", model.pretrained_report)
    return model


BUBBLIIIING_STAGES = tuple(
    DecoderStage(out, skip) for out, skip in ((512, 3), (256, 2), (128, 1), (64, 0))
)


@register_model("vgg16_unet")
def vgg16_unet(
    num_classes: int,
    in_channels: int = 3,
    *,
    pretrained: str | Path | None = None,
    deep_supervision: DeepSupervision = 0,
) -> EncoderUNet:
    """U-Net on a VGG16 encoder (levels at strides 1..16), bubbliiiing's decoder."""
    encoder = build_encoder("vgg16", in_channels)
    model = EncoderUNet(
        encoder, BUBBLIIIING_STAGES, num_classes, deep_supervision=deep_supervision
    )
    return _with_weights(model, pretrained)


@register_model("resnet50_unet")
def resnet50_unet(
    num_classes: int,
    in_channels: int = 3,
    *,
    pretrained: str | Path | None = None,
    deep_supervision: DeepSupervision = 0,
) -> EncoderUNet:
    """U-Net on a ResNet-50 encoder (strides 2..32), bubbliiiing's decoder + a final up block."""
    encoder = build_encoder("resnet50", in_channels)
    stages = (*BUBBLIIIING_STAGES, DecoderStage(64, None))
    model = EncoderUNet(encoder, stages, num_classes, deep_supervision=deep_supervision)
    return _with_weights(model, pretrained)


@register_model("mobilenet_unet")
def mobilenet_unet(
    num_classes: int,
    in_channels: int = 3,
    *,
    pretrained: str | Path | None = None,
    level1_skip: bool = True,
    deep_supervision: DeepSupervision = 0,
) -> EncoderUNet:
    """U-Net on a MobileNetV2 encoder (strides 2..16) with the Keras conv+BN decoder."""
    encoder = build_encoder("mobilenet_v2", in_channels, depth=4)
    stages = (
        DecoderStage(512, None, upsample=False),
        DecoderStage(256, 2),
        DecoderStage(128, 1),
        DecoderStage(64, 0 if level1_skip else None),
    )
    model = EncoderUNet(
        encoder,
        stages,
        num_classes,
        num_convs=1,
        batch_norm=True,
        deep_supervision=deep_supervision,
    )
    return _with_weights(model, pretrained)
