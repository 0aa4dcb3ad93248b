"""Export a checkpoint to ONNX: preprocessing inside the graph, everything else as metadata.

The exported graph takes RAW pixel values (float32 ``N x C x H x W``, 0..255 for 8-bit data, or
0..``input_scale``) and applies the training normalisation itself, so a user of the ``.onnx`` file
cannot forget or get wrong the preprocessing (the most common complaint about exported
segmentation models). Batch, height and width are dynamic. The metadata key ``unetlab`` holds a
JSON object with the class names and colours, mean/std, input scale, size arithmetic
(``geometry``, ``size_multiple``), model name and options and the default threshold: everything
:class:`~unetlab.inference.onnx_backend.OnnxPredictor` needs, with no torch at run time.

After writing, the file is checked with ``onnx.checker`` and ONNX Runtime's output is compared
with torch's on random input at two sizes and batch sizes; a difference above ``tolerance`` is
an error, not a warning.

Uses torch's TorchScript-based exporter (``dynamo=False``): the dynamo exporter, the default in
recent torch, needs the extra package ``onnxscript``, and the classic exporter handles these
plain convolutional models with dynamic sizes exactly.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unetlab.artifacts.card import ModelCard
from unetlab.artifacts.geometry import Geometry, model_geometry
from unetlab.artifacts.onnx_file import card_properties
from unetlab.data.preprocess import Normalization
from unetlab.errors import UnetlabError

__all__ = ["export_model", "export_onnx", "write_graph"]
DEFAULT_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "image", "logits"


class NormalizedModel(nn.Module):
    """``model((x / input_scale - mean) / std)`` as one graph: raw pixels in, logits out."""

    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(self, model: nn.Module, norm: Normalization, input_scale: float = 255.0):
        super().__init__()
        self.model = model
        mean = torch.tensor(norm.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(norm.std, dtype=torch.float32).view(1, -1, 1, 1)
        self.register_buffer("scale", 1.0 / (input_scale * std))
        self.register_buffer("shift", mean / std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x * self.scale - self.shift)


@dataclass
class ExportReport:
    path: Path
    max_abs_diff: float
    checked_shapes: list[tuple[int, ...]]
    seconds: float
    opset: int
    megabytes: float
    working_scale: float = 1.0


def export_onnx(
    checkpoint: str | Path,
    out_path: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    input_scale: float = 255.0,
    threshold: float = 0.5,
    tolerance: float = 1e-4,
    overwrite: bool = False,
) -> ExportReport:
    """Export a checkpoint (file or run folder) to ``out_path`` and verify it with ONNX Runtime.

    Args:
        input_scale: the full-scale pixel value the graph expects (255 for 8-bit images, 65535
            for 16-bit): the graph divides by it before the normalisation.
        threshold: default foreground threshold of binary (1- or 2-channel) models, stored in
            the metadata; multi-class models ignore it (argmax).
        tolerance: largest accepted ``max |ORT - torch|`` on random input.
        overwrite: replace an existing ``out_path`` (it is never replaced by a half-written or
            unverified file either way).

    Raises:
        UnetlabError: a missing optional dependency, a failed export, or outputs that differ.
    """
    from unetlab.artifacts.read import load_network

    card, model = load_network(checkpoint)
    return export_model(
        model,
        out_path,
        spec=card.spec,
        normalization=card.normalization,
        class_names=list(card.class_names),
        class_colors=[list(c) for c in card.class_colors],
        opset=opset,
        input_scale=input_scale,
        threshold=threshold,
        tolerance=tolerance,
        source=card.path,
        tta=card.tta,
        working_scale=card.working_scale,
        postprocessing=card.postprocessing,
        overwrite=overwrite,
    )


def export_model(
    model: nn.Module,
    out_path: str | Path,
    *args: Any,
    overwrite: bool = False,
    **kwargs: Any,
) -> ExportReport:
    """Export a model in memory (``spec`` as in a checkpoint: name, num_classes, in_channels,
    options); see :func:`export_onnx`. The file appears only once it is written and verified
    (:func:`unetlab.fs.atomic.atomic_path`): a failed or killed export leaves any previous file
    at ``out_path`` as it was, and an existing file is replaced only with ``overwrite``."""
    from unetlab.fs.atomic import atomic_path, remove_stale_temps

    final = Path(out_path)
    remove_stale_temps(final)
    with atomic_path(final, overwrite=overwrite) as temp:
        report = _export_into(model, temp, *args, **kwargs)
    report.path = final
    return report


def _export_into(
    model: nn.Module,
    out_path: str | Path,
    *,
    spec: dict[str, Any],
    normalization: Normalization,
    class_names: list[str] | None = None,
    class_colors: list | None = None,
    opset: int = DEFAULT_OPSET,
    input_scale: float = 255.0,
    threshold: float = 0.5,
    tolerance: float = 1e-4,
    source: str | Path | None = None,
    tta: bool | str = False,
    working_scale: float = 1.0,
    postprocessing: dict[str, Any] | None = None,
) -> ExportReport:
    """:func:`export_model` into ``out_path`` (a temp file) directly. ``tta``,
    ``working_scale`` and ``postprocessing`` (the checkpoint's) go into the metadata, so the
    export predicts alike by default."""
    onnx, ort = _require_onnx()
    started = time.perf_counter()
    model = model.eval()
    in_channels = int(spec["in_channels"])
    graph = NormalizedModel(model, normalization, input_scale).eval()
    geometry = model_geometry(model)
    out_path = Path(out_path)
    side = geometry.input_size(geometry.output_size(max(64, geometry.multiple)))
    sample = torch.rand(1, in_channels, side, side) * input_scale
    try:
        write_graph(graph, sample, out_path, opset)
    except Exception as exc:
        raise UnetlabError(
            f"ONNX export failed ({type(exc).__name__}: {str(exc).splitlines()[0]})",
            source,
            "try another --opset (e.g. 13 to 18); rerun with --debug for the traceback",
        ) from exc
    card = ModelCard.build(
        path=out_path,
        format="onnx",
        spec=spec,
        geometry=geometry,
        class_names=class_names,
        class_colors=class_colors,
        normalization=normalization,
        threshold=float(threshold),
        input_scale=float(input_scale),
        tta=tta,
        working_scale=float(working_scale),
        postprocessing=postprocessing,
    )
    metadata = card.to_onnx_metadata()
    proto = onnx.load(str(out_path))
    onnx.helper.set_model_props(proto, card_properties(card))
    proto.doc_string = (
        f"unetlab {card.architecture} segmentation model; input: {metadata['input']}; "
        f"output: {metadata['output']}; classes: {', '.join(card.class_names)}"
    )
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out_path))
    diff, shapes = verify_onnx(out_path, graph, geometry, in_channels, input_scale, ort)
    if not diff <= tolerance:
        raise UnetlabError(
            f"ONNX Runtime output differs from torch by up to {diff:.3g} (tolerance "
            f"{tolerance:g}) on random input, so the export was not written",
            source,
            "try another --opset and report the model",
        )
    return ExportReport(
        out_path,
        diff,
        shapes,
        time.perf_counter() - started,
        opset,
        out_path.stat().st_size / 2**20,
        float(working_scale),
    )


def write_graph(module: nn.Module, sample: torch.Tensor, path: Path, opset: int) -> None:
    """``torch.onnx.export`` with dynamic batch, height and width (classic exporter)."""
    dynamic = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():  # the classic exporter's deprecation notices
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module,
            (sample,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: dynamic, OUTPUT_NAME: dynamic},
            opset_version=opset,
            dynamo=False,
        )


@torch.no_grad()
def verify_onnx(
    path: Path, graph: nn.Module, geometry: Geometry, in_channels: int, input_scale: float, ort
) -> tuple[float, list[tuple[int, ...]]]:
    """Largest ``|ORT - torch|`` over random raw inputs of two sizes and batch sizes (the second
    proves the dynamic axes work)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    first = geometry.input_size(geometry.output_size(geometry.multiple))
    second = geometry.input_size(geometry.output_size(first - geometry.margin + 1))
    shapes: list[tuple[int, ...]] = [
        (1, in_channels, first, second),
        (2, in_channels, second, first),
    ]
    worst = 0.0
    for shape in shapes:
        x = torch.rand(*shape) * input_scale
        expected = graph(x).numpy()
        actual = session.run(None, {INPUT_NAME: x.numpy()})[0]
        if actual.shape != expected.shape:
            return float("inf"), shapes
        worst = max(worst, float(np.abs(actual - expected).max()))
    return worst, shapes


def _require_onnx():
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise UnetlabError(
            f"ONNX export needs the optional packages onnx and onnxruntime ({exc})",
            hint="pip install 'unetlab[onnx]'",
        ) from None
    return onnx, onnxruntime
