"""Static int8 quantisation of an exported unetlab ONNX model with ONNX Runtime's tools.

Why static (calibrated) rather than dynamic: a U-Net's cost is convolutions over large
activations, and only static quantisation runs those convolutions on 8-bit integers; dynamic
quantisation would quantise weights only and leave the activations in float.

What is done, in ONNX Runtime's recommended form for CPUs:

- QDQ format (QuantizeLinear/DequantizeLinear pairs that ONNX Runtime fuses into integer
  kernels), unsigned 8-bit activations, signed 8-bit weights quantised per output channel;
- weights reduced to 7 bits by default (``reduce_range``): x86 CPUs without VNNI multiply
  8-bit pairs into saturating 16-bit sums, which 8-bit weights can overflow; 7 bits are safe on
  every CPU at a small cost in weight precision;
- activation ranges calibrated on a few training images fed exactly as a deployment feeds them
  (raw pixel values scaled to the graph's ``input_scale``; the normalisation is inside the
  graph), each a centred window of at most ``calibration_size`` pixels whose sides the
  network accepts (mirror-padded when the image is smaller).

The model card of the export (class names, normalisation, geometry: read with
:func:`unetlab.artifacts.read.onnx_card`) is written into the quantised file with a
``quantization`` entry that records how it was made, so
:class:`~unetlab.inference.onnx_backend.OnnxPredictor` runs it unchanged.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unetlab.artifacts.card import ModelCard
from unetlab.artifacts.geometry import Geometry
from unetlab.artifacts.onnx_file import card_properties, full_scale
from unetlab.errors import UnetlabError
from unetlab.fs.atomic import atomic_path
from unetlab.inference.grid import mirror_indices

METHODS = ("minmax", "entropy", "percentile")
DEFAULT_METHOD = "minmax"
DEFAULT_NUM_IMAGES = 8
DEFAULT_CALIBRATION_SIZE = 512

Calibration = Sequence[np.ndarray] | str | Path


@dataclass
class QuantizeReport:
    path: Path
    method: str
    num_images: int
    input_shapes: list[tuple[int, ...]]
    seconds: float
    megabytes: float
    fp32_megabytes: float


def quantize_onnx(
    onnx_path: str | Path,
    out_path: str | Path,
    calibration: Calibration,
    *,
    split: str = "train",
    num_images: int = DEFAULT_NUM_IMAGES,
    method: str = DEFAULT_METHOD,
    calibration_size: int = DEFAULT_CALIBRATION_SIZE,
    per_channel: bool = True,
    reduce_range: bool = True,
    overwrite: bool = False,
) -> QuantizeReport:
    """Write an int8 (QDQ) copy of the unetlab ONNX model ``onnx_path`` to ``out_path``.

    Args:
        calibration: images (``H x W`` or ``H x W x C`` arrays, uint8/uint16/float in [0, 1])
            or a dataset folder, whose ``split`` images are read (the first ``num_images``).
        num_images: how many images calibrate the activation ranges.
        method: ``minmax``, ``entropy`` or ``percentile`` (ONNX Runtime's calibrators).
        calibration_size: largest side of the window taken from each image.
        per_channel, reduce_range: see the module docstring.
        overwrite: replace an existing ``out_path`` (written atomically either way).

    Raises:
        UnetlabError: no calibration images, a file that is not a unetlab export, an image whose
            channels do not fit the model, or a failure inside ONNX Runtime's quantiser.
    """
    onnx, quantization = _require_quantization()
    from onnxruntime.quantization.shape_inference import quant_pre_process

    started = time.perf_counter()
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    if method not in METHODS:
        raise UnetlabError(
            f"unknown calibration method '{method}'", hint=f"use one of {', '.join(METHODS)}"
        )
    card = export_card(onnx_path)
    images = calibration_images(calibration, split, num_images)
    inputs = [prepare_calibration_input(image, card, calibration_size) for image in images]
    with atomic_path(out_path, overwrite=overwrite) as temp:  # whole and tagged, or not at all
        _quantize_into(
            onnx, quantization, quant_pre_process, onnx_path, temp, inputs, card, method,
            per_channel, reduce_range,
        )
    return QuantizeReport(
        out_path,
        method,
        len(inputs),
        [tuple(x.shape) for x in inputs],
        time.perf_counter() - started,
        out_path.stat().st_size / 2**20,
        onnx_path.stat().st_size / 2**20,
    )


def _quantize_into(
    onnx: Any, quantization: Any, quant_pre_process: Any, onnx_path: Path, out_path: Path,
    inputs: list[np.ndarray], card: ModelCard, method: str, per_channel: bool,
    reduce_range: bool,
) -> None:
    try:
        with tempfile.TemporaryDirectory(prefix="unetlab-quant-") as folder, _quiet_root_logger():
            prepared = Path(folder) / "prepared.onnx"
            # ORT's recommended pre-pass: shape inference and graph clean-up (folds the
            # exporter's Identity-wrapped biases into initializers so they quantise to int32);
            # symbolic shape inference is skipped: it stops 'incomplete' on these graphs
            quant_pre_process(str(onnx_path), str(prepared), skip_symbolic_shape=True)
            quantization.quantize_static(
                str(prepared),
                str(out_path),
                _Reader(inputs, _input_name(onnx_path, onnx)),
                quant_format=quantization.QuantFormat.QDQ,
                activation_type=quantization.QuantType.QUInt8,
                weight_type=quantization.QuantType.QInt8,
                per_channel=per_channel,
                reduce_range=reduce_range,
                calibrate_method=_calibration_method(quantization, method),
                calibration_providers=["CPUExecutionProvider"],
            )
    except Exception as exc:
        raise UnetlabError(
            f"ONNX Runtime could not quantise this model ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})",
            onnx_path,
            "re-export it with 'unetlab export' (opset 13 or newer) and try again; "
            "--debug shows the traceback",
        ) from exc
    record = {
        "format": "QDQ",
        "activations": "uint8",
        "weights": "int8 (7-bit range)" if reduce_range else "int8",
        "per_channel": per_channel,
        "method": method,
        "calibration_images": len(inputs),
        "calibration_shapes": [list(x.shape) for x in inputs],
        "source": onnx_path.name,
    }
    proto = onnx.load(str(out_path))
    onnx.helper.set_model_props(proto, card_properties(card.with_quantization(out_path, record)))
    onnx.save(proto, str(out_path))


def export_card(path: Path) -> ModelCard:
    """The card of the fp32 export to quantise, or a clear error (missing, unreadable, not a
    unetlab export, already quantised)."""
    from unetlab.artifacts.read import onnx_card

    card = onnx_card(path)
    if card.quantization is not None:
        raise UnetlabError(
            "this model is already quantised", path, "quantise the fp32 export instead"
        )
    return card


def calibration_images(calibration: Calibration, split: str, num_images: int) -> list[np.ndarray]:
    """The first ``num_images`` images of a list, or of a dataset folder's ``split``."""
    if num_images < 1:
        raise UnetlabError(f"num_images must be at least 1, got {num_images}")
    if isinstance(calibration, (str, Path)):
        from unetlab.data.io import read_image
        from unetlab.data.layouts import dataset_info

        info = dataset_info(calibration)
        ids = info.ids(split)[:num_images]
        images = [read_image(info.images[i][0]) for i in ids]
        where: str | Path | None = calibration
    else:
        images = [np.asarray(image) for image in list(calibration)[:num_images]]
        where = None
    if not images:
        raise UnetlabError(
            "int8 quantisation needs calibration images to measure the activation ranges, "
            "and none were given" + (f" (split '{split}' is empty)" if where else ""),
            where,
            "pass a few training images (or a dataset folder, e.g. --calibration DATA); "
            "8 typical images are enough",
        )
    return images


def prepare_calibration_input(image: np.ndarray, card: ModelCard, max_side: int) -> np.ndarray:
    """``1 x C x H x W`` float32 raw pixels as the exported graph takes them, at sides it accepts.

    Same scaling as :class:`OnnxPredictor` (``pixel * input_scale / full_scale(dtype)``); the
    window is centred, at most ``max_side`` per side, mirror-padded if the image is smaller.
    """
    in_channels, geometry = card.in_channels, card.geometry
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise UnetlabError(f"calibration image of shape {array.shape} is not H x W (x C)")
    if array.shape[2] == 1 and in_channels == 3:
        array = np.repeat(array, 3, axis=2)
    elif array.shape[2] == 4 and in_channels == 3:
        array = array[:, :, :3]
    if array.shape[2] != in_channels:
        raise UnetlabError(
            f"a calibration image has {array.shape[2]} channel(s) but the model takes "
            f"{in_channels}",
            hint="calibrate with images like the training images",
        )
    rows, cols = (_window(length, geometry, max_side) for length in array.shape[:2])
    window = array[np.ix_(rows, cols)]
    scale = card.input_scale / full_scale(array.dtype)
    x = window.transpose(2, 0, 1)[None].astype(np.float32) * np.float32(scale)
    return np.ascontiguousarray(x)


def _window(length: int, geometry: Geometry, max_side: int) -> np.ndarray:
    """Indices of a centred window (mirrored where it overhangs) of a side the network takes."""
    side = geometry.input_size(geometry.output_size_within(min(length, max(max_side, 1))))
    start = (length - side) // 2
    return mirror_indices(start, start + side, length)


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over prepared inputs (get_next/rewind)."""

    def __init__(self, inputs: list[np.ndarray], input_name: str):
        self.inputs, self.input_name = inputs, input_name
        self._iter: Iterator[np.ndarray] = iter(inputs)

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._iter, None)
        return None if x is None else {self.input_name: x}

    def rewind(self) -> None:
        self._iter = iter(self.inputs)

    def __len__(self) -> int:
        return len(self.inputs)


def _input_name(path: Path, onnx: Any) -> str:
    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    return next(i.name for i in graph.input if i.name not in initializers)


def _calibration_method(quantization: Any, method: str) -> Any:
    return {
        "minmax": quantization.CalibrationMethod.MinMax,
        "entropy": quantization.CalibrationMethod.Entropy,
        "percentile": quantization.CalibrationMethod.Percentile,
    }[method]


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """ONNX Runtime's quantiser logs advice per tensor on the root logger; keep errors only."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _require_quantization() -> tuple[Any, Any]:
    try:
        import onnx
        from onnxruntime import quantization
    except ImportError as exc:
        raise UnetlabError(
            f"int8 quantisation needs the optional packages onnx and onnxruntime ({exc})",
            hint="pip install 'unetlab[onnx]'",
        ) from None
    return onnx, quantization
