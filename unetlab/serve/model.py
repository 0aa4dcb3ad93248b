"""The model behind the page: opened once, described once (the model card).

:func:`open_predictor` is the only place ``unetlab serve`` opens a model (through
:func:`unetlab.inference.open_model`, as ``predict`` does). :func:`model_card` turns the
predictor's :class:`~unetlab.artifacts.card.ModelCard` into what a person wants to know before
trusting the predictions: architecture, classes, input size rules, training data and the
metrics of the run; nothing here reads checkpoint or export metadata itself.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from unetlab.artifacts.card import TrainingRecord
from unetlab.inference.core import ArrayPredictor


def open_predictor(
    model_path: str | Path, device: str = "auto", precision: str = "fp32", **options: Any
) -> ArrayPredictor:
    """A predictor for a run folder, a ``.pt`` checkpoint or an ``.onnx`` export (fp32/int8),
    through the opener ``unetlab predict`` uses; ``options`` are :class:`PredictOptions`."""
    from unetlab.inference import open_model

    return open_model(model_path, device, precision, **options)


def run_folder(model_path: str | Path) -> Path:
    """The run folder of a model: itself, ``RUN`` for ``RUN/checkpoints/x.pt``, else its folder."""
    path = Path(model_path)
    if path.is_dir():
        return path
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


def model_file(model_path: str | Path) -> Path:
    """The file a run folder or a path stands for (what ``open_predictor`` loads)."""
    from unetlab.artifacts.checkpoint import resolve_checkpoint
    from unetlab.artifacts.onnx_file import is_onnx_file

    return Path(model_path) if is_onnx_file(model_path) else resolve_checkpoint(model_path)


def model_card(model_path: str | Path, predictor: ArrayPredictor) -> dict[str, Any]:
    """JSON-ready facts about the model for the page (see the module docstring); ``predictor``
    comes from :func:`open_predictor` (its ``card`` is the model file's)."""
    card = predictor.card
    if card is None:
        raise ValueError("the predictor has no model card: open it with open_predictor")
    path = Path(card.path) if card.path else model_file(model_path)
    training: dict[str, Any] | None
    if card.training is not None:
        training = _training_from_card(card.training)
    else:  # an export: the run folder around it (if any) tells how it was trained
        training = _training_from_folder(run_folder(path))
    model = getattr(predictor, "model", None)
    parameters = sum(p.numel() for p in model.parameters()) if model is not None else None
    outputs = card.out_channels
    named = zip(predictor.class_names, palette(predictor), strict=True)
    return {
        "file": str(path),
        "format": card.describe_format(),
        "precision": _precision(predictor),
        "architecture": card.architecture,
        "options": dict(card.options),
        "parameters": parameters,
        "in_channels": predictor.in_channels,
        "output": "1 channel, sigmoid" if outputs == 1 else f"{outputs} channels, softmax",
        "classes": [
            {"index": i, "name": name, "color": list(color)}
            for i, (name, color) in enumerate(named)
        ],
        "binary": predictor.num_classes == 2,
        "threshold": predictor.options.threshold,
        "input_rule": input_rule(predictor),
        "training": training,
        "evaluations": _evaluations(run_folder(path)),
    }


def palette(predictor: ArrayPredictor) -> list[tuple[int, int, int]]:
    """One colour per class: the model's, completed from the VOC colour map as predict does."""
    from unetlab.inference.overlay import make_palette

    colors = make_palette(predictor.class_colors)[: predictor.num_classes]
    return [(int(r), int(g), int(b)) for r, g, b in colors]


def input_rule(predictor: ArrayPredictor) -> str:
    """What images the model takes, in one sentence."""
    geometry, options = predictor.geometry, predictor.options
    if geometry.margin:
        sides = f"valid padding, {geometry.offset} px of mirrored context per side"
    else:
        sides = f"mirror-padded to a multiple of {geometry.multiple} px, cropped back"
    channels = "gray" if predictor.in_channels == 1 else f"{predictor.in_channels} channels"
    return f"{channels}, 8 or 16 bit, any size ({sides}); tiled above {options.tile} px"


def _precision(predictor: ArrayPredictor) -> str:
    dtype = getattr(predictor, "autocast_dtype", None)
    return "fp32" if dtype is None else str(dtype).replace("torch.", "")


def _training_from_card(training: TrainingRecord) -> dict[str, Any]:
    """A checkpoint's training record as the page shows it."""
    return {
        "run": training.run,
        "data": training.data_root,
        "epochs": training.epochs,
        "steps": training.steps,
        "best_metric": training.best_metric,
        "best_value": training.best_value,
        "metrics": dict(training.metrics),
    }


def _training_from_folder(run: Path) -> dict[str, Any] | None:
    """For an export inside a run folder: the run's data and its last metrics row."""
    config_path, metrics_path = run / "config.yaml", run / "metrics.csv"
    if not config_path.is_file():
        return None
    import yaml

    try:
        config = yaml.safe_load(config_path.read_text()) or {}
        rows = list(csv.DictReader(metrics_path.open())) if metrics_path.is_file() else []
    except (OSError, yaml.YAMLError, csv.Error):
        return None
    last = {k: _number(v) for k, v in (rows[-1] if rows else {}).items()}
    return {
        "run": config.get("name"),
        "data": (config.get("data") or {}).get("root"),
        "epochs": last.get("epoch"),
        "metrics": {k: v for k, v in last.items() if v is not None},
    }


def _evaluations(run: Path) -> list[dict[str, Any]]:
    """Headline numbers of the run's ``unetlab evaluate`` reports (one per split)."""
    found = []
    for report in sorted((run / "evaluation").glob("*/report.json")):
        try:
            data = json.loads(report.read_text())
        except (OSError, ValueError):
            continue
        found.append(
            {
                "split": data.get("split"),
                "images": data.get("num_images"),
                "miou": data.get("miou"),
                "pixel_accuracy": data.get("pixel_accuracy"),
                "checkpoint": Path(str(data.get("checkpoint", ""))).name,
            }
        )
    return found


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None
