"""The model card: everything a checkpoint or an export says about its model, read once.

Why one object: predict, evaluate, bench, export, summary and the web page all need the class
names, colours, normalisation and size rules of a model; each reading them on its own is how
two spellings of the default class names and three threshold rules came about. The card is
built from a checkpoint dict (:meth:`ModelCard.from_checkpoint`) or an export's metadata
(:meth:`ModelCard.from_onnx_metadata`) and written back as that metadata
(:meth:`ModelCard.to_onnx_metadata`). torch-free (numpy and Pillow only).

"Output channels" and "classes" differ for one model kind only: one sigmoid channel scores two
classes (background, foreground). :func:`classes_for_channels` and
:func:`channels_for_classes` are the one place that says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from unetlab.artifacts.geometry import Geometry
from unetlab.data.colors import voc_colormap
from unetlab.data.preprocess import Normalization
from unetlab.errors import UnetlabError

Color = tuple[int, int, int]
METADATA_FORMAT = 1


def classes_for_channels(out_channels: int) -> int:
    """Classes a model with ``out_channels`` output channels scores (1 channel -> 2 classes)."""
    return max(int(out_channels), 2)


def channels_for_classes(num_classes: int, single_channel: bool = False) -> int:
    """Output channels a model needs for ``num_classes`` classes; ``single_channel`` asks for
    the one-sigmoid-channel form of a two-class task (``bce``)."""
    if single_channel:
        if int(num_classes) != 2:
            raise UnetlabError(
                f"a single sigmoid output channel scores exactly 2 classes, not {num_classes}",
                hint="use a softmax loss (ce, dice, focal ...) for more classes",
            )
        return 1
    return int(num_classes)


def default_class_names(out_channels: int) -> list[str]:
    """Names for a model stored without them: ``class_0``, ``class_1``, ..."""
    return [f"class_{i}" for i in range(classes_for_channels(out_channels))]


def complete_colors(colors: Sequence[Sequence[int]] | None, count: int) -> list[Color]:
    """``count`` class colours: the given ones first, the PASCAL VOC colour map after."""
    given = [(int(c[0]), int(c[1]), int(c[2])) for c in list(colors or [])[:count]]
    return given + voc_colormap(count)[len(given) : count]


@dataclass(frozen=True)
class TrainingRecord:
    """How a checkpoint's model was trained: its run, data, progress and scores (what a person
    reads before trusting it; exports do not carry it)."""

    run: str | None = None
    data_root: str | None = None
    epochs: int | None = None
    steps: int | None = None
    best_metric: str | None = None  # the metric that chose this checkpoint
    best_value: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # the checkpoint's numbers only

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any]) -> TrainingRecord:
        config = checkpoint.get("config") or {}
        metrics = checkpoint.get("metrics") or {}
        best = checkpoint.get("best_metric")
        return cls(
            run=config.get("name"),
            data_root=(config.get("data") or {}).get("root"),
            epochs=_optional(int, checkpoint.get("epoch")),
            steps=_optional(int, checkpoint.get("global_step")),
            best_metric=(config.get("train") or {}).get("best_metric"),
            best_value=_optional(float, best),
            metrics={str(k): v for k, v in metrics.items() if isinstance(v, int | float)},
        )


def _optional(kind: Any, value: Any) -> Any:
    return None if value is None else kind(value)


@dataclass(frozen=True)
class ModelCard:
    """What a model artifact is. ``out_channels``: the network's output channels (the
    ``num_classes`` a checkpoint's model spec stores); ``num_classes``: the classes it scores.

    ``threshold``: the foreground threshold stored in an export (None for checkpoints; the rule
    that applies it is :func:`unetlab.inference.labels.resolve_threshold`); ``input_scale``: the
    full-scale pixel value an export's graph expects; ``quantization``: how an int8 copy was made;
    ``tta``: the test-time augmentation the run chose (``inference.tta``), the default of
    predict, evaluate and serve; ``training``: how a checkpoint's model was trained (None for
    exports).
    ``working_scale``: the resolution the network was trained at (``data.working_scale``):
    prediction resizes its input by it and the scores back (:mod:`unetlab.data.resolution`).
    ``postprocessing``: the stored post-processing of the labels (a checkpoint's
    ``RUN/postprocessing.json``, an export's metadata; read by
    :mod:`unetlab.inference.postprocessing`).
    """

    path: str
    format: str  # "checkpoint" or "onnx"
    architecture: str
    options: dict[str, Any]
    in_channels: int
    out_channels: int
    class_names: tuple[str, ...]
    class_colors: tuple[Color, ...]
    normalization: Normalization
    geometry: Geometry
    threshold: float | None = None
    input_scale: float = 255.0
    quantization: dict[str, Any] | None = None
    tta: bool | str = False
    working_scale: float = 1.0
    training: TrainingRecord | None = None
    postprocessing: dict[str, Any] | None = None

    @property
    def num_classes(self) -> int:
        return classes_for_channels(self.out_channels)

    @property
    def spec(self) -> dict[str, Any]:
        """The model spec as a checkpoint stores it (what ``build_model`` takes)."""
        return {
            "name": self.architecture,
            "num_classes": self.out_channels,
            "in_channels": self.in_channels,
            "options": dict(self.options),
        }

    def describe(self) -> str:
        """One line for people: architecture, channels, classes, format."""
        kind = "int8 ONNX" if self.quantization else "ONNX" if self.format == "onnx" else ".pt"
        return (
            f"{self.architecture} ({kind}), {self.in_channels} input channel(s), "
            f"{self.out_channels} output channel(s): {', '.join(self.class_names)}"
        )

    @classmethod
    def build(
        cls,
        *,
        path: str | Path | None,
        format: str,
        spec: dict[str, Any],
        geometry: Geometry,
        class_names: Sequence[str] | None = None,
        class_colors: Sequence[Sequence[int]] | None = None,
        normalization: Normalization | None = None,
        **rest: Any,
    ) -> ModelCard:
        """A card from its parts, with the defaults filled in and the class count checked."""
        source = "" if path is None else str(path)
        out_channels, in_channels = int(spec["num_classes"]), int(spec.get("in_channels", 3))
        num_classes = classes_for_channels(out_channels)
        names = tuple(str(n) for n in class_names or []) or tuple(default_class_names(out_channels))
        if len(names) != num_classes:
            raise UnetlabError(
                f"the model file names {len(names)} classes but its model predicts {num_classes}",
                source or None,
                "the file is inconsistent: retrain (or re-export), or fix its class names",
            )
        return cls(
            path=source,
            format=format,
            architecture=str(spec["name"]),
            options=dict(spec.get("options") or {}),
            in_channels=in_channels,
            out_channels=out_channels,
            class_names=names,
            class_colors=tuple(complete_colors(class_colors, num_classes)),
            normalization=normalization or Normalization.default_for(in_channels),
            geometry=geometry,
            **rest,
        )

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any], geometry: Geometry) -> ModelCard:
        """The card of a loaded checkpoint dict; ``geometry`` is its model's (see
        :func:`unetlab.artifacts.read.load_network`)."""
        data = checkpoint.get("data") or {}
        config = checkpoint.get("config") or {}
        has_stats = data.get("mean") is not None and data.get("std") is not None
        return cls.build(
            path=checkpoint.get("path"),
            format="checkpoint",
            spec=checkpoint["model"],
            geometry=geometry,
            class_names=data.get("class_names"),
            class_colors=data.get("class_colors"),
            normalization=Normalization.from_dict(data) if has_stats else None,
            tta=tta_setting((config.get("inference") or {}).get("tta")),
            working_scale=float((config.get("data") or {}).get("working_scale", 1.0)),
            training=TrainingRecord.from_checkpoint(checkpoint),
        )

    @classmethod
    def from_onnx_metadata(cls, metadata: dict[str, Any], path: str | Path) -> ModelCard:
        """The card of an export (the ``unetlab`` metadata written by ``unetlab export``)."""
        try:
            stored = metadata.get("threshold")
            return cls.build(
                path=path,
                format="onnx",
                spec=metadata["model"],
                geometry=Geometry.from_dict(metadata["geometry"]),
                class_names=metadata.get("class_names"),
                class_colors=metadata.get("class_colors"),
                normalization=Normalization.from_dict(metadata),
                threshold=None if stored is None else float(stored),
                input_scale=float(metadata.get("input_scale", 255.0)),
                quantization=metadata.get("quantization"),
                tta=tta_setting(metadata.get("tta")),
                working_scale=float(metadata.get("working_scale", 1.0)),
                postprocessing=metadata.get("postprocessing"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UnetlabError(
                f"the 'unetlab' metadata of this export is incomplete ({type(exc).__name__}: "
                f"{exc})",
                path,
                "re-export the model with 'unetlab export'",
            ) from None

    def to_onnx_metadata(self) -> dict[str, Any]:
        """The ``unetlab`` metadata of an export of this model (JSON-ready)."""
        from unetlab import __version__

        metadata: dict[str, Any] = {
            "format": METADATA_FORMAT,
            "unetlab_version": __version__,
            "model": self.spec,
            "class_names": list(self.class_names),
            "class_colors": [list(c) for c in self.class_colors],
            "mean": list(self.normalization.mean),
            "std": list(self.normalization.std),
            "input_scale": float(self.input_scale),
            "geometry": self.geometry.to_dict(),
            "size_multiple": self.geometry.multiple,
            "threshold": None if self.threshold is None else float(self.threshold),
            "tta": self.tta or "off",
            "working_scale": float(self.working_scale),
            "input": f"raw pixel values, float32 N x {self.in_channels} x H x W, "
            f"0..{self.input_scale:g}"
            + (", resized by working_scale" if self.working_scale != 1 else ""),
            "output": "logits N x K x H' x W' (K = 1: sigmoid; K >= 2: softmax)",
        }
        if self.quantization is not None:
            metadata["quantization"] = self.quantization
        if self.postprocessing:
            metadata["postprocessing"] = self.postprocessing
        return metadata

    def with_export_settings(self, *, threshold: float | None, input_scale: float) -> ModelCard:
        """This card as an export of it stores it (its threshold and input scale)."""
        return replace(self, format="onnx", threshold=threshold, input_scale=float(input_scale))

    def with_quantization(self, path: str | Path, record: dict[str, Any]) -> ModelCard:
        """The card of an int8 copy of this export, written to ``path``."""
        return replace(self, path=str(path), quantization=dict(record))

    def describe_format(self) -> str:
        """``PyTorch checkpoint``, ``ONNX, fp32`` or ``ONNX, int8``."""
        if self.format != "onnx":
            return "PyTorch checkpoint"
        return "ONNX, int8" if self.quantization else "ONNX, fp32"


def tta_setting(value: Any) -> bool | str:
    """A stored ``inference.tta`` as the predictor takes it (``off``/absent: False)."""
    if value in (None, False, "off", ""):
        return False
    return "flips" if value is True else str(value)
