"""The torch predictor: a model in, labels for images of any size out.

Padding, batching, tiling, TTA and the decision rule live in
:class:`~unetlab.inference.core.ArrayPredictor`, shared with the ONNX Runtime predictor; the
device, layout and precision of the forward pass in
:class:`~unetlab.inference.network.TorchNetwork`.
Open a checkpoint with :func:`unetlab.inference.open_model` (``Predictor.from_checkpoint`` is
the same thing for checkpoints).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unetlab.artifacts.card import ModelCard
from unetlab.artifacts.geometry import model_geometry, unwrap
from unetlab.data.preprocess import Normalization, image_to_tensor
from unetlab.inference.core import ArrayPredictor, Prediction, PredictOptions
from unetlab.inference.network import TorchNetwork, resolve_device

__all__ = ["PredictOptions", "Prediction", "Predictor", "resolve_device"]


class Predictor(ArrayPredictor):
    """Predict with a torch model.

    Args:
        model: a unetlab model (eval mode is set here).
        normalization: the training normalisation (from the checkpoint).
        class_names, class_colors: for outputs and legends.
        device, channels_last, compile, precision: how the forward pass runs
            (:class:`~unetlab.inference.network.TorchNetwork`; ``channels_last`` None: NHWC on
            CPUs).
        options: tiling, TTA, threshold, batch size (:class:`PredictOptions`).
        card: the model card when opened from a file (:func:`unetlab.inference.open_model`).
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
        card: ModelCard | None = None,
    ):
        self.torch_network = TorchNetwork(
            model, device, channels_last=channels_last, precision=precision, compile=compile
        )
        self.device = self.torch_network.device
        self.memory_format = self.torch_network.memory_format
        self.model = self.torch_network.model
        self.normalization = normalization
        self.card = card
        super().__init__(
            self.torch_network.numpy,
            self._prepare,
            model_geometry(unwrap(model)),
            int(getattr(unwrap(model), "in_channels", len(normalization.mean))),
            class_names,
            class_colors,
            options,
        )

    @property
    def settings(self) -> dict[str, Any]:
        return self.torch_network.settings

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
        """:func:`unetlab.inference.open_model` for a checkpoint file or a run folder.

        ``options`` are fields of :class:`PredictOptions` (``tile=1024, tta="flips"`` ...).
        """
        from unetlab.inference.open import open_checkpoint

        return open_checkpoint(
            path,
            str(device),
            precision=precision,
            channels_last=channels_last,
            compile=compile,
            **options,
        )

    def _prepare(self, tile: np.ndarray) -> np.ndarray:
        return image_to_tensor(tile, self.normalization).numpy()
