"""A torch model with the run-time choices that change its speed and its numbers.

Device, memory layout (``channels_last`` or NCHW), autocast precision and ``torch.compile`` are
decided here once, for ``predict``, ``evaluate``, ``bench`` and the web page alike (they all
open a model with :func:`unetlab.inference.open_model`). Why a default layout per device:
oneDNN runs NHWC convolutions about 1.3-1.6x faster on CPUs (``unetlab bench`` of the same
model with and without it), while CUDA is left as it is.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from unetlab.errors import UnetlabError
from unetlab.inference.precision import autocast_dtype, precision_name


def resolve_device(device: str | torch.device = "auto", name: str = "--device") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else must be a usable torch device.

    The one device rule of every command (training maps ``cuda`` to its local rank on top);
    ``name`` is how errors call the setting (``train.device`` for training).
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise UnetlabError(
            f"unknown {name} '{device}' ({exc})", hint="use auto, cpu, cuda or cuda:N"
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UnetlabError(
            f"{name} '{device}' asked for but this machine's torch has no usable GPU",
            hint=f"use {name} cpu (or auto), or install a CUDA build of torch",
        )
    return resolved


def default_channels_last(device: torch.device) -> bool:
    """The layout a device runs fastest: NHWC on CPUs, as-is elsewhere."""
    return device.type == "cpu"


class TorchNetwork:
    """``network(N x C x H x W tensor) -> float32 logits`` with the choices of the docstring.

    Args:
        model: the network (set to eval mode and moved to ``device`` here).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1`` ...
        channels_last: NHWC memory format; None: :func:`default_channels_last`.
        precision: ``fp32``, ``bf16``/``fp16`` autocast, or ``auto`` (bf16 where native).
        compile: ``torch.compile`` the model (slow first call; measure before using).
    """

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device = "auto",
        *,
        channels_last: bool | None = None,
        precision: str = "fp32",
        compile: bool = False,
    ):
        self.device = resolve_device(device)
        self.autocast_dtype = autocast_dtype(precision, self.device)
        self.channels_last = (
            default_channels_last(self.device) if channels_last is None else bool(channels_last)
        )
        self.memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        self.model = model.eval().to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.compiled = bool(compile)
        self.runner: Any = torch.compile(self.model) if compile else self.model

    @property
    def settings(self) -> dict[str, Any]:
        """What this network runs on and how (reported by ``bench``, checked by tests)."""
        return {
            "backend": "torch",
            "device": str(self.device),
            "layout": "channels_last" if self.channels_last else "nchw",
            "precision": precision_name(self.autocast_dtype),
            "compile": self.compiled,
        }

    @torch.inference_mode()
    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        inputs = inputs.to(self.device).contiguous(memory_format=self.memory_format)
        dtype = self.autocast_dtype
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            logits = self.runner(inputs)
        return logits.float()

    def numpy(self, batch: np.ndarray) -> np.ndarray:
        """The same forward pass for a float32 numpy batch (what the tiling core calls)."""
        return self(torch.from_numpy(batch)).cpu().numpy()
