"""Compatibility name: the paper's weight map is computed by the data pipeline, in
:mod:`unetlab.data.weight_map` (the dataset caches it per mask; the loss only consumes it)."""

from __future__ import annotations

from unetlab.data.weight_map import unet_weight_map

__all__ = ["unet_weight_map"]
