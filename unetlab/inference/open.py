"""One opener: a model file + device + precision -> the predictor that ``predict`` runs.

``open_model`` is the only place that decides the backend (an ``.onnx`` file runs on ONNX
Runtime, anything else is a checkpoint or run folder run by torch), the device, the layout and
the precision, and that applies the threshold rule to the model's card. ``unetlab predict``,
``evaluate``, ``bench`` and the web page all call it, so they run the same forward pass on the
same artifact; :func:`unetlab.artifacts.read_card` reads the card alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from unetlab.artifacts.onnx_file import is_onnx_file
from unetlab.errors import UnetlabError

if TYPE_CHECKING:
    from unetlab.inference.core import ArrayPredictor
    from unetlab.inference.predictor import Predictor

BACKENDS = ("auto", "torch", "onnx")
DEFAULT_PRECISION = "fp32"
"""The precision every command uses unless told otherwise (``auto`` changes results on CPUs
with native bf16, so it is opt-in)."""


def choose_backend(path: str | Path, backend: str = "auto") -> str:
    """``torch`` or ``onnx`` for ``path``: by its ending unless ``backend`` names one that fits."""
    if backend not in BACKENDS:
        raise UnetlabError(f"unknown backend '{backend}'", hint=f"use one of {', '.join(BACKENDS)}")
    exported = is_onnx_file(path)
    if backend == "auto":
        return "onnx" if exported else "torch"
    if backend == "onnx" and not exported:
        raise UnetlabError(
            "--backend onnx needs an exported .onnx file",
            path,
            f"export it first: unetlab export {path} --out model.onnx",
        )
    if backend == "torch" and exported:
        raise UnetlabError("an .onnx file runs on the onnx backend", path, "use --backend onnx")
    return backend


def open_model(
    path: str | Path,
    device: str = "auto",
    precision: str = DEFAULT_PRECISION,
    *,
    backend: str = "auto",
    channels_last: bool | None = None,
    compile: bool = False,
    threads: int | None = None,
    **options: Any,
) -> ArrayPredictor:
    """The predictor for a checkpoint file, a run folder or an exported ``.onnx`` file.

    ``device``, ``precision``, ``channels_last`` and ``compile`` apply to checkpoints (see
    :class:`~unetlab.inference.network.TorchNetwork`); an export runs on the CPU in the precision
    it was exported in (``precision`` must be ``fp32`` or ``auto``), with ``threads``.
    ``options`` are :class:`~unetlab.inference.core.PredictOptions` fields; ``threshold`` is
    checked against the model (binary models only; an export's stored one is the default).
    """
    if choose_backend(path, backend) == "torch":
        return open_checkpoint(
            path, device, precision=precision, channels_last=channels_last, compile=compile,
            **options,
        )
    if precision not in ("fp32", "auto"):
        raise UnetlabError(
            f"--precision {precision} applies to checkpoints (the torch backend); an .onnx "
            "file runs in the precision it was exported in",
            path,
            "for a faster ONNX model, export an int8 copy (unetlab export CKPT --int8 DATA)",
        )
    if channels_last or compile:
        raise UnetlabError(
            "--channels-last and --compile apply to checkpoints (the torch backend)",
            path,
            "leave them out for an .onnx file",
        )
    if device not in ("auto", "cpu"):
        raise UnetlabError(
            f"an .onnx file runs on the CPU through ONNX Runtime, not on '{device}'",
            path,
            "leave out --device, or run the checkpoint on the GPU",
        )
    from unetlab.inference.onnx_backend import OnnxPredictor

    return OnnxPredictor(path, threads=threads, **options)


def open_checkpoint(
    path: str | Path,
    device: str = "auto",
    *,
    precision: str = DEFAULT_PRECISION,
    channels_last: bool | None = None,
    compile: bool = False,
    **options: Any,
) -> Predictor:
    """The torch predictor of a checkpoint file or run folder (see :func:`open_model`)."""
    from unetlab.artifacts.read import load_network
    from unetlab.inference.core import PredictOptions
    from unetlab.inference.labels import resolve_threshold
    from unetlab.inference.predictor import Predictor
    from unetlab.inference.tta import resolve_tta

    card, model = load_network(path)
    options["threshold"] = resolve_threshold(
        card.out_channels, options.get("threshold"), card.threshold, card.path
    )
    options["tta"] = resolve_tta(options.get("tta"), card)
    return Predictor(
        model,
        card.normalization,
        list(card.class_names),
        [list(c) for c in card.class_colors],
        device=device,
        channels_last=channels_last,
        compile=compile,
        precision=precision,
        options=PredictOptions(**options),
        card=card,
    )
