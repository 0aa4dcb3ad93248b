"""An exported ``.onnx`` file as a torch module, so ``evaluate`` scores what deployment runs.

Why: an int8 (or any exported) model must be measured on the val split before it replaces the
float one, with the same loop, padding, decision rule and report as a checkpoint. The module
takes the *normalised* tensors that unetlab's datasets yield, turns them back into the raw
pixel values the graph expects (normalisation is inside the graph), runs ONNX Runtime on the
CPU and returns the logits as a tensor. It is inference only (no gradients, CPU only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unetlab.export.onnx_runtime import open_session, read_metadata
from unetlab.inference.grid import Geometry


def is_onnx_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ".onnx"


class OnnxModule(nn.Module):
    """``module(normalised N x C x H x W) -> logits`` through an exported file.

    ``geometry`` (the size arithmetic stored at export) is what
    :func:`unetlab.inference.forward.model_geometry` reads, so padding and cropping match the
    torch model's.
    """

    def __init__(self, path: str | Path, threads: int | None = None):
        super().__init__()
        self.path = Path(path)
        self.session = open_session(self.path, threads)
        self.metadata = read_metadata(self.path, self.session)
        self.input_name = self.session.get_inputs()[0].name
        self.geometry = Geometry.from_dict(self.metadata["geometry"])
        scale = float(self.metadata.get("input_scale", 255.0))
        mean = torch.tensor(self.metadata["mean"], dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(self.metadata["std"], dtype=torch.float32).view(1, -1, 1, 1)
        # raw = (normalised * std + mean) * scale, folded into one multiply-add
        self.register_buffer("raw_scale", std * scale, persistent=False)
        self.register_buffer("raw_shift", mean * scale, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw = (x.float().cpu() * self.raw_scale + self.raw_shift).numpy()
        logits = self.session.run(None, {self.input_name: np.ascontiguousarray(raw)})[0]
        return torch.from_numpy(logits).to(x.device)

    def as_checkpoint(self) -> dict[str, Any]:
        """The parts of a checkpoint that describe the model (spec, classes, normalisation)."""
        meta = self.metadata
        return {
            "path": str(self.path),
            "model": dict(meta["model"]),
            "data": {
                "class_names": meta.get("class_names"),
                "class_colors": meta.get("class_colors") or None,
                "mean": meta["mean"],
                "std": meta["std"],
            },
            "threshold": meta.get("threshold"),
        }
