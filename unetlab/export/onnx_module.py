"""An exported ``.onnx`` file as a torch module: ``module(normalised tensor) -> logits``.

For code that holds normalised tensors (a training-style loop) and wants an export's logits.
``unetlab evaluate`` does not need it: it scores exports through the same
:class:`~unetlab.inference.onnx_backend.OnnxPredictor` that ``predict`` runs, on raw pixels.
The module turns normalised tensors back into the raw pixel values the graph expects
(normalisation is inside the graph), runs ONNX Runtime on the CPU and returns the logits as a
tensor. Inference only (no gradients, CPU only).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from unetlab.artifacts.card import ModelCard
from unetlab.artifacts.onnx_file import is_onnx_file, open_session, read_metadata

__all__ = ["OnnxModule", "is_onnx_file"]


class OnnxModule(nn.Module):
    """``module(normalised N x C x H x W) -> logits`` through an exported file.

    ``geometry`` (the size arithmetic stored at export) is what
    :func:`unetlab.artifacts.geometry.model_geometry` reads, so padding and cropping match the
    torch model's.
    """

    raw_scale: torch.Tensor
    raw_shift: torch.Tensor

    def __init__(self, path: str | Path, threads: int | None = None):
        super().__init__()
        self.path = Path(path)
        self.session = open_session(self.path, threads)
        self.metadata = read_metadata(self.path, self.session)
        self.card = ModelCard.from_onnx_metadata(self.metadata, self.path)
        self.input_name = self.session.get_inputs()[0].name
        self.geometry = self.card.geometry
        norm, scale = self.card.normalization, self.card.input_scale
        mean = torch.tensor(norm.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(norm.std, dtype=torch.float32).view(1, -1, 1, 1)
        # raw = (normalised * std + mean) * scale, folded into one multiply-add
        self.register_buffer("raw_scale", std * scale, persistent=False)
        self.register_buffer("raw_shift", mean * scale, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw = (x.float().cpu() * self.raw_scale + self.raw_shift).numpy()
        logits = self.session.run(None, {self.input_name: np.ascontiguousarray(raw)})[0]
        return torch.from_numpy(logits).to(x.device)
