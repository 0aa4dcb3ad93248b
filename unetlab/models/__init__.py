"""The U-Net family from one registry.

``build_model(name, num_classes, in_channels=3, **options)`` builds any registered architecture
(``list_models()`` names them): the classic ``unet`` and the encoder models ``vgg16_unet``,
``resnet50_unet`` and ``mobilenet_unet``. Every model has ``size_multiple`` (input sides must
be multiples of it) and ``spec`` (what a checkpoint stores to rebuild it); encoder models have an
``encoder`` submodule that :func:`load_encoder_weights` fills with ImageNet weights.
:func:`summarize` tabulates layers, parameters and GFLOPs; :mod:`unetlab.models.padding` holds
the input-size arithmetic and the pad/crop helpers for inference.
"""

from unetlab.models import encoder_unet as _encoder_unet  # noqa: F401  (registers models)
from unetlab.models import unet as _unet  # noqa: F401  (registers models)
from unetlab.models.base import SegmentationModel
from unetlab.models.encoder_unet import DecoderStage, EncoderUNet
from unetlab.models.padding import (
    check_size,
    crop_to,
    is_valid_input_size,
    pad_for_valid,
    pad_to_multiple,
    valid_input_size,
    valid_output_size,
)
from unetlab.models.pretrained import LoadReport, load_encoder_weights, load_model_weights
from unetlab.models.registry import build_model, list_models, model_options, register_model
from unetlab.models.summary import ModelSummary, summarize
from unetlab.models.unet import UNet

__all__ = [
    "DecoderStage",
    "EncoderUNet",
    "LoadReport",
    "ModelSummary",
    "SegmentationModel",
    "UNet",
    "build_model",
    "check_size",
    "crop_to",
    "is_valid_input_size",
    "list_models",
    "load_encoder_weights",
    "load_model_weights",
    "model_options",
    "pad_for_valid",
    "pad_to_multiple",
    "register_model",
    "summarize",
    "valid_input_size",
    "valid_output_size",
]
