"""Losses on logits, all honouring the ignore index 255, from one registry.

``build_loss(name, num_classes, ignore_index=255, class_weights=None, **options)`` returns an
``nn.Module`` called as ``loss(logits, target, weight=None)``. Names: ``ce``, ``bce``,
``dice`` (soft Dice / F-beta), ``ce_dice``, ``focal``, ``weighted_ce`` (per-pixel weights, e.g.
the U-Net paper's map from :func:`unet_weight_map`).
"""

from unetlab.losses.class_weights import WEIGHTING_METHODS, class_weights_from_frequencies
from unetlab.losses.dice import FBetaLoss
from unetlab.losses.pixelwise import PixelwiseLoss
from unetlab.losses.registry import LOSSES, WeightedSum, build_loss, list_losses
from unetlab.losses.weight_map import unet_weight_map

__all__ = [
    "LOSSES",
    "WEIGHTING_METHODS",
    "FBetaLoss",
    "PixelwiseLoss",
    "WeightedSum",
    "build_loss",
    "class_weights_from_frequencies",
    "list_losses",
    "unet_weight_map",
]
