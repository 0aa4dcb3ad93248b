"""The U-Net family from one registry (see :mod:`unetlab.models.registry`)."""

from unetlab.models import unet as _unet  # noqa: F401  (registers the architectures)
from unetlab.models.registry import build_model, list_models, model_options, register_model

__all__ = ["build_model", "list_models", "model_options", "register_model"]
