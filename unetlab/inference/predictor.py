"""The torch predictor: a checkpoint in, labels for images of any size out.

``Predictor.from_checkpoint("runs/demo")`` needs nothing else: the checkpoint carries the model
spec, class names and colours and the normalisation. Padding, batching, tiling, TTA and the
decision rule live in :class:`~unetlab.inference.core.ArrayPredictor`, shared with the ONNX
Runtime predictor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unetlab.data.preprocess import Normalization, image_to_tensor
from unetlab.errors import UnetlabError
from unetlab.inference.core import ArrayPredictor, Prediction, PredictOptions
from unetlab.inference.forward import model_geometry, unwrap
from unetlab.inference.precision import autocast_dtype

__all__ = ["PredictOptions", "Prediction", "Predictor", "resolve_device"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else must be a usable torch device."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise UnetlabError(
            f"unknown device '{device}' ({exc})", hint="use auto, cpu or cuda"
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UnetlabError(
            f"device '{device}' asked for but CUDA is not available on this machine",
            hint="use --device cpu (or auto)",
        )
    return resolved


class Predictor(ArrayPredictor):
    """Predict with a torch model.

    Args:
        model: a unetlab model (eval mode is set here).
        normalization: the training normalisation (from the checkpoint).
        class_names, class_colors: for outputs and legends.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1`` ...
        channels_last: run convolutions in NHWC memory format; ``None`` (default) turns it on
            for CPUs, where oneDNN runs NHWC convolutions about 1.3-1.6x faster (measured with
            ``unetlab bench unet [-o base=8] --channels-last``, see the project report), and
            leaves CUDA as it is.
        compile: ``torch.compile`` the model (slow first call; measure before using).
        precision: ``fp32`` (default), ``bf16``/``fp16`` autocast, or ``auto`` (bf16 where the
            device computes it natively, see :mod:`unetlab.inference.precision`).
        options: tiling, TTA, threshold, batch size (:class:`PredictOptions`).
    """

    def __init__(
        self,
        model: nn.Module,
        normalization: Normalization,
        class_names: list[str],
        class_colors: list | None = None,
        *,
        device: str | torch.device = "auto",
        channels_last: bool | None = None,
        compile: bool = False,
        precision: str = "fp32",
        options: PredictOptions | None = None,
    ):
        self.device = resolve_device(device)
        self.autocast_dtype = autocast_dtype(precision, self.device)
        if channels_last is None:
            channels_last = self.device.type == "cpu"
        self.model = model.eval().to(self.device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.runner: nn.Module = torch.compile(self.model) if compile else self.model
        self.normalization = normalization
        super().__init__(
            self._run,
            self._prepare,
            model_geometry(unwrap(model)),
            int(getattr(unwrap(model), "in_channels", len(normalization.mean))),
            class_names,
            class_colors,
            options,
        )

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str | torch.device = "auto",
        *,
        channels_last: bool | None = None,
        compile: bool = False,
        precision: str = "fp32",
        **options: Any,
    ) -> Predictor:
        """A predictor for a checkpoint file or a run folder (its best, else last, checkpoint).

        ``options`` are fields of :class:`PredictOptions` (``tile=1024, tta="flips"`` ...).
        """
        from unetlab.engine.checkpoint import load_checkpoint, model_from_checkpoint

        checkpoint = load_checkpoint(path)
        model = model_from_checkpoint(checkpoint)
        data = checkpoint.get("data") or {}
        in_channels = int(checkpoint["model"]["in_channels"])
        normalization = (
            Normalization.from_dict(data)
            if "mean" in data and "std" in data
            else Normalization.default_for(in_channels)
        )
        names = data.get("class_names") or default_class_names(checkpoint["model"]["num_classes"])
        return cls(
            model,
            normalization,
            list(names),
            data.get("class_colors"),
            device=device,
            channels_last=channels_last,
            compile=compile,
            precision=precision,
            options=PredictOptions(**options),
        )

    def _prepare(self, tile: np.ndarray) -> np.ndarray:
        return image_to_tensor(tile, self.normalization).numpy()

    @torch.inference_mode()
    def _run(self, batch: np.ndarray) -> np.ndarray:
        inputs = (
            torch.from_numpy(batch).to(self.device).contiguous(memory_format=self.memory_format)
        )
        dtype = self.autocast_dtype
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            logits = self.runner(inputs)
        return logits.float().cpu().numpy()


def default_class_names(num_outputs: int) -> list[str]:
    """Names for a checkpoint without them: ``class_0``... (a 1-output model has two classes)."""
    return [f"class_{i}" for i in range(max(int(num_outputs), 2))]
