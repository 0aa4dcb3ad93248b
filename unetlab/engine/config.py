"""The run configuration: one validated object, from a YAML file, a preset and the command line.

Layers, later ones winning: built-in defaults < preset (``--preset`` or ``preset:`` in the file)
< the YAML file < command-line options < ``--set key.sub=value`` overrides. Every section forbids
unknown fields, so a typo (``optim.learning_rate``) stops the run with the field, the file it
came from and the valid names, instead of being silently ignored. The resolved configuration
(with the values read from the data filled in) is saved as ``RUN/config.yaml`` and inside every
checkpoint; ``load_config(RUN/config.yaml)`` gives the same object back.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from unetlab.data.transforms import AugmentConfig
from unetlab.errors import UnetlabError

PositiveInt = Annotated[int, Field(ge=1)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]

BINARY_LOSSES = ("bce",)
"""Losses for a one-output-channel (sigmoid) model: the binary convention of
:mod:`unetlab.inference.labels` (metrics still count two classes)."""

METRICS = ("miou", "val_loss", "pixel_acc", "train_loss")
"""Metrics a run can select its best checkpoint by, besides ``iou_<class name>``."""


class Section(BaseModel):
    """A config section: unknown fields are errors, values are re-checked on assignment.

    The string under each field is its description: ``docs/config.md`` is generated from them
    (``python -m unetlab.engine.config_reference``).
    """

    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, use_attribute_docstrings=True
    )


class NormalizationConfig(Section):
    """Per-channel mean and std in [0, 1] intensity units (see ``unetlab.data.preprocess``)."""

    mean: list[float]
    """One mean per image channel, in [0, 1] intensity units (pixel / full scale)."""
    std: list[Annotated[float, Field(gt=0)]]
    """One standard deviation per channel, same units."""

    @model_validator(mode="after")
    def _same_length(self) -> NormalizationConfig:
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean has {len(self.mean)} values but std has {len(self.std)}")
        return self


class DataConfig(Section):
    """Where the images are and how they are fed to the network."""

    root: str | None = None
    """The dataset folder (plain or VOC layout); relative paths are read from the working
    folder, and the run's saved ``config.yaml`` stores it absolute."""
    train_split: str = "train"
    """Split list to train on (``splits/<name>.txt``, or VOC's ``ImageSets/Segmentation``)."""
    val_split: str = "val"
    """Split list to validate on (and to pick the best checkpoint by)."""
    num_classes: PositiveInt | None = None
    """Number of classes; null: from ``classes.txt``, else the largest mask value + 1."""
    class_names: list[str] | None = None
    """One name per class in index order; null: ``classes.txt``, else ``class 0``, ..."""
    patch_size: PositiveInt | tuple[PositiveInt, PositiveInt] = 256
    """Training crop: one side, or ``[height, width]``; a multiple of the model's stride."""
    working_scale: Annotated[float, Field(gt=0, le=4)] = 1.0
    """Scale at which the network sees the images: every image and mask is resized by it for
    training and validation, and prediction resizes its input by it and the scores back, so
    labels and metrics stay at the input's size. Below 1 for photographs much larger than their
    thinnest structures need (the planner's choice, ``unetlab.data.resolution``)."""
    batch_size: PositiveInt = 4
    """Crops per step and process: the global batch is ``batch_size`` x processes."""
    val_batch_size: PositiveInt = 1
    """Validation images per forward pass (whole images: they must share a size)."""
    repeat: PositiveInt = 1
    """Passes over the training images per epoch (more crops per epoch of a small dataset)."""
    num_workers: Annotated[int, Field(ge=0)] = 2
    """Data-loading worker processes (0: load in the training process)."""
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    """Training augmentation (flips, rotations, scale, elastic, brightness/contrast)."""
    normalization: NormalizationConfig | None = None
    """Per-channel mean and std; null: ImageNet's for RGB images (what pretrained encoders
    expect), 0.5/0.5 per channel otherwise (the resolved values are saved)."""

    @property
    def patch_hw(self) -> tuple[int, int]:
        size = self.patch_size
        return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def known_name(value: str, names: Iterable[str], what: str) -> str:
    """Check a registry name at config time, so the error names the field and the file."""
    names = sorted(names)
    if value not in names:
        close = difflib.get_close_matches(value, names, n=1)
        guess = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown {what} {value!r}{guess}: use one of {', '.join(names)}")
    return value


class ModelConfig(Section):
    """Which architecture (``unetlab.models.list_models()``) with which options."""

    name: str = "unet"
    """Architecture: one of ``unetlab summary``'s model names (unet, vgg16_unet, ...)."""
    options: dict[str, Any] = Field(default_factory=dict)
    """The model's options (``unetlab summary NAME`` lists them with their defaults). A
    higher layer that changes ``name`` drops the options given below it; ``{}`` or null
    resets them."""
    pretrained: str | None = None
    """Encoder weights when training starts: a file, a ``file://`` or ``http(s)://`` URL, or
    ``imagenet``; the loader reports loaded, missing and unexpected keys."""
    init_weights: str | None = None
    """Initial weights of the whole model when training starts: a state dict file (plain,
    ``{"state_dict": ...}``, DDP-prefixed, or a unetlab checkpoint), loaded with
    ``weights_only=True``; keys that do not fit are reported, not loaded."""
    in_channels: PositiveInt | None = None
    """Image channels; null: read from the images."""

    @field_validator("name")
    @classmethod
    def _known_model(cls, value: str) -> str:
        from unetlab.models import list_models

        return known_name(value, list_models(), "model")

    @field_validator("options", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value


class WeightMapConfig(Section):
    """The U-Net paper's per-pixel weights: class balance plus ``w0`` in gaps between objects."""

    w0: NonNegativeFloat = 10.0
    """Weight of the border term between touching objects (the paper: 10)."""
    sigma: PositiveFloat = 5.0
    """Width of the border term, in pixels (the paper: about 5)."""
    object_classes: list[int] = Field(default_factory=lambda: [1])
    """Classes whose connected components are the objects that border terms separate."""
    class_balance: bool = True
    """w_c: weigh each class by (most frequent class's pixels) / (its pixels), per mask, as the
    paper does; it makes the argmax favour the rare class (thicker membranes on ISBI)."""


class LossConfig(Section):
    """The loss (``unetlab.losses.build_loss``), class weights and the optional weight map."""

    name: str = "ce"
    """ce, bce (one output channel), dice, ce_dice, focal or weighted_ce (needs weight_map)."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Options of the loss (e.g. ``gamma`` for focal, ``beta`` for dice); null resets them."""
    class_weights: Literal["auto"] | list[NonNegativeFloat] | None = None
    """One weight per class, or ``auto`` from the training masks' pixel counts."""
    class_weight_method: Literal["inverse", "median", "sqrt_inverse"] = "median"
    """How ``auto`` turns pixel frequencies into weights (median: SegNet's median frequency)."""
    weight_map: WeightMapConfig | None = None
    """The U-Net paper's per-pixel weight map (for weighted_ce)."""

    @field_validator("name")
    @classmethod
    def _known_loss(cls, value: str) -> str:
        from unetlab.losses import list_losses

        return known_name(value, list_losses(), "loss")

    @field_validator("options", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value


class OptimConfig(Section):
    """The optimizer (all parameters; frozen ones are skipped while they have no gradient)."""

    name: Literal["adam", "adamw", "sgd"] = "adamw"
    """The optimizer."""
    lr: PositiveFloat = 1e-3
    """Peak learning rate (after warm-up); scale it yourself with the global batch."""
    weight_decay: NonNegativeFloat = 1e-4
    """L2 penalty (decoupled for adamw)."""
    momentum: NonNegativeFloat = 0.9
    """sgd only."""
    nesterov: bool = False
    """sgd only."""
    grad_clip: PositiveFloat | None = None
    """Largest total gradient norm; null: no clipping."""


class ScheduleConfig(Section):
    """Learning rate over the run, updated every step (see :mod:`unetlab.engine.schedule`)."""

    name: Literal["cosine", "step", "poly", "constant"] = "cosine"
    """The decay after warm-up."""
    warmup_epochs: NonNegativeFloat = 0.0
    """Linear warm-up from 0, in epochs (fractions allowed)."""
    warmup_steps: Annotated[int, Field(ge=0)] = 0
    """Linear warm-up in steps, used when warmup_epochs is 0."""
    step_size: PositiveFloat = 30.0
    """step: epochs between drops."""
    gamma: PositiveFloat = 0.1
    """step: factor per drop."""
    power: PositiveFloat = 0.9
    """poly: the exponent."""
    min_lr: NonNegativeFloat = 0.0
    """The rate at the end of cosine and poly."""


class EarlyStoppingConfig(Section):
    """Stop when the best metric has not improved for a while."""

    patience: PositiveInt = 10
    """Validations without improvement before stopping."""
    min_delta: NonNegativeFloat = 0.0
    """Smallest change that counts as an improvement."""


UNTIL_THE_CLOCK = 100_000
"""``train.epochs`` of a run that a time budget ends (planned runs, ``train --budget``):
more epochs than any budget fits; progress lines then show the budget instead."""


class TrainConfig(Section):
    """The loop: length, validation, the best checkpoint, precision, device, limits."""

    epochs: PositiveInt = 50
    """Passes over the training split (times data.repeat)."""
    val_every: PositiveInt = 1
    """Validate every N epochs (and always after the last one)."""
    best_metric: str = "miou"
    """What best.pt is chosen by: miou, val_loss, pixel_acc, train_loss or iou_<class name>."""
    mode: Literal["auto", "max", "min"] = "auto"
    """Whether best_metric is maximised; auto: min for losses, max otherwise."""
    early_stopping: EarlyStoppingConfig | None = None
    """null: train all epochs."""
    freeze_encoder_epochs: Annotated[int, Field(ge=0)] = 0
    """Keep the encoder's weights and batch-norm statistics fixed for the first N epochs
    (encoder models only)."""
    unfreeze_batch_size: PositiveInt | None = None
    """Batch size once the encoder is unfrozen (it needs more memory); null: unchanged."""
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    """Mixed precision. auto: bf16 (or fp16 with a gradient scaler) on CUDA; on CPUs measured
    at the start of the run: bf16 where a timed step of this model is at least 10% faster,
    else off (the choice is written into the run's config.yaml)."""
    channels_last: Literal["auto"] | bool = "auto"
    """NHWC convolutions. auto: on CPUs (1.3-1.9x faster steps measured, docs/benchmarks.md)
    and on GPUs under amp; off elsewhere."""
    device: str = "auto"
    """auto, cpu, cuda or cuda:N (under torchrun each process takes cuda:LOCAL_RANK)."""
    seed: int = 0
    """Seeds the weights, the data order and the augmentation."""
    deterministic: bool = False
    """Deterministic kernels only (slower; some operations refuse)."""
    sync_bn: bool = False
    """Synchronise batch norm across processes (distributed CUDA runs only)."""
    time_limit_minutes: PositiveFloat | None = None
    """Stop after this much training + validation time (wall clock), with a resumable
    last.pt; the learning-rate decay follows the clock. The limit is the total over all
    sessions of a run: a resumed run counts the time already used (raise it to go on)."""
    max_steps_per_epoch: PositiveInt | None = None
    """Cut each epoch after N steps; null: the whole split."""
    log_every: PositiveInt = 20
    """Steps between log lines when the output is not a terminal."""
    num_predictions: Annotated[int, Field(ge=0)] = 4
    """Validation images drawn as image | truth | prediction panels in predictions/."""

    @field_validator("amp", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        """YAML reads a bare ``off`` (``amp: off``, ``--set train.amp=off``) as False."""
        return "off" if value is False else value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
            raise ValueError(f"unknown device {value!r}: use auto, cpu, cuda or cuda:N")
        return value

    @field_validator("best_metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        if value not in METRICS and not value.startswith("iou_"):
            raise ValueError(
                f"unknown metric {value!r}: use one of {', '.join(METRICS)} or iou_<class name>"
            )
        return value

    @property
    def maximize(self) -> bool:
        return self.mode == "max" or (self.mode == "auto" and not self.best_metric.endswith("loss"))


class InferenceConfig(Section):
    """How the trained model is used: stored in its checkpoint and its exports, the default of
    ``unetlab predict``, ``evaluate`` and ``serve`` (their flags override it)."""

    tta: Literal["off", "hflip", "flips", "flips+rot90"] = "off"
    """Test-time augmentation: average over mirrored (and rotated) copies. hflip (2x the
    inference time) for images with an up, flips (4x) or flips+rot90 (8x) for images without."""


class RunConfig(Section):
    """Everything a training run needs; ``unetlab train`` writes it to ``RUN/config.yaml``."""

    name: str | None = None
    """The run folder's name; null: ``<dataset>-<model>``. Numbered (``NAME-2``) when the
    folder exists."""
    out_dir: str = "runs"
    """The folder that holds the run folders (stored absolute in the run's config.yaml)."""
    preset: str | None = None
    """A preset the other values are layered on: camvid, demo or isbi2012."""
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    _notes: list[str] = PrivateAttr(default_factory=list)

    @property
    def notes(self) -> list[str]:
        """What building this config decided for the user (e.g. options it dropped); the
        trainer and ``train --dry-run`` print them."""
        return self._notes

    @property
    def binary(self) -> bool:
        """One sigmoid output channel (BCE) instead of a softmax over the classes."""
        return self.loss.name in BINARY_LOSSES

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-able values (tuples become lists)."""
        return self.model_dump(mode="json")

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the YAML atomically; an existing file not written by this invocation is
        replaced only with ``overwrite`` (:mod:`unetlab.fs.atomic`)."""
        from unetlab.fs.atomic import write_text

        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        return write_text(path, text, overwrite=overwrite)


# ---------------------------------------------------------------- building a config from layers


class Replace(dict):
    """A mapping that replaces, instead of merging into, the value below it: what ``--set
    model.options={...}`` gives (``--set model.options.base=8`` still merges)."""


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``update`` over ``base``; nested mappings merge (unless :class:`Replace`), everything
    else is replaced."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Replace):
            merged[key] = deep_merge({}, value)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["optim.lr=0.01", "data.patch_size=[128, 96]"]`` -> a nested dict (YAML values).

    A mapping value (``model.options={base: 8}``, ``{}``) is a :class:`Replace`: it sets the
    field to exactly that mapping.
    """
    result: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise UnetlabError(
                f"cannot read the override {item!r}",
                hint="write --set section.field=value, e.g. --set optim.lr=0.01",
            )
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as exc:
            raise UnetlabError(f"the value in {item!r} is not valid YAML ({exc})") from None
        parts = key.split(".")
        node = result
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UnetlabError(f"the override {item!r} conflicts with another override")
        node[parts[-1]] = Replace(value) if isinstance(value, dict) else value
    return result


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path`` with a clear error for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise UnetlabError("config file not found", path, "check the path")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).strip().split("\n")[0]
        raise UnetlabError(
            f"not a readable YAML file: {problem}{where}", path, "fix the YAML syntax there"
        ) from None
    except UnicodeDecodeError as exc:
        raise UnetlabError(
            f"not a text file ({exc.reason})", path, "pass a YAML config file"
        ) from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise UnetlabError(
            f"a config must be a mapping of sections, got {type(values).__name__}",
            path,
            "see examples/config.yaml and docs/config.md for the sections and fields",
        )
    return values


def load_config(
    source: str | Path | Mapping[str, Any] | None = None,
    *,
    preset: str | None = None,
    options: Mapping[str, Any] | None = None,
    overrides: Iterable[str] = (),
) -> RunConfig:
    """Build a :class:`RunConfig` from a preset, a YAML file (or dict), options and overrides.

    Args:
        source: a YAML file, a dict of the same shape, or None for defaults only.
        preset: a preset name (:func:`unetlab.presets.list_presets`); overrides the file's
            ``preset:`` field.
        options: nested values from command-line options (``{"train": {"epochs": 3}}``).
        overrides: ``key.sub=value`` strings, applied last.

    Raises:
        UnetlabError: naming the field, where it came from and the valid choices.
    """
    from unetlab.presets import get_preset

    if source is None:
        file_values: dict[str, Any] = {}
        origin = None
    elif isinstance(source, Mapping):
        file_values, origin = dict(source), None
    else:
        file_values, origin = read_yaml(source), Path(source)
    layers = [
        ("--set", parse_overrides(overrides)),
        ("command-line options", dict(options or {})),
        (str(origin) if origin else "the config", file_values),
    ]
    preset_name = preset or file_values.get("preset")
    if preset_name:
        layers.append((f"preset '{preset_name}'", get_preset(preset_name)))
    merged: dict[str, Any] = {}
    notes: list[str] = []
    for origin, values in reversed(layers):
        merged = _drop_options_of_replaced_model(merged, values, origin, notes)
        merged = deep_merge(merged, values)
    if preset_name:
        merged["preset"] = preset_name
    try:
        config = RunConfig.model_validate(merged)
    except ValidationError as exc:
        raise config_error(exc, layers) from None
    config.notes.extend(notes)
    return config


def _drop_options_of_replaced_model(
    merged: dict[str, Any], layer: Mapping[str, Any], origin: str, notes: list[str]
) -> dict[str, Any]:
    """When ``layer`` names another model than the layers below it, their model options (which
    belong to the old model) are dropped, and a note says so."""
    new_model = layer.get("model")
    old_model = merged.get("model")
    if not isinstance(new_model, Mapping) or not isinstance(old_model, Mapping):
        return merged
    old_name = old_model.get("name", ModelConfig.model_fields["name"].default)
    new_name = new_model.get("name", old_name)
    old_options = old_model.get("options")
    if new_name == old_name or not old_options or not isinstance(old_options, Mapping):
        return merged
    from unetlab.models import list_models, model_options

    shown = ", ".join(f"{key}={value!r}" for key, value in old_options.items())
    accepted = (
        ", ".join(f"{k}={v!r}" for k, v in model_options(new_name).items()) or "none"
        if new_name in list_models()
        else "see 'unetlab summary'"
    )
    notes.append(
        f"model '{new_name}' (from {origin}) replaces '{old_name}', so the options given for "
        f"'{old_name}' were dropped ({shown}); the options of '{new_name}' are: {accepted}"
    )
    return {**merged, "model": {k: v for k, v in old_model.items() if k != "options"}}


def config_error(exc: ValidationError, layers: list[tuple[str, dict]]) -> UnetlabError:
    """A readable one-paragraph error from pydantic's, naming each bad field and its origin."""
    messages: dict[str, list[str]] = {}
    origins: list[str] = []
    for error in exc.errors():
        loc = _field_path(tuple(str(part) for part in error["loc"]))
        field = ".".join(loc)
        origin = next((name for name, values in layers if _lookup(values, loc)), None)
        if origin and origin not in origins:
            origins.append(origin)
        if error["type"] == "extra_forbidden":
            valid = _fields_at(loc[:-1])
            close = difflib.get_close_matches(loc[-1], valid, n=1)
            guess = f" (did you mean '{close[0]}'?)" if close else ""
            text = f"unknown field{guess}; valid fields here: {', '.join(valid)}"
        else:
            shown = repr(error.get("input"))
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            text = f"{error['msg'].removeprefix('Value error, ')} (got {shown})"
        if text not in messages.setdefault(field, []):
            messages[field].append(text)
    problems = [f"'{field}': {' or '.join(texts)}" for field, texts in messages.items()]
    source = origins[0] if len(origins) == 1 and origins[0].endswith((".yaml", ".yml")) else None
    where = "" if source else f" (from {', '.join(origins)})" if origins else ""
    return UnetlabError(
        f"invalid run configuration{where}: " + "; ".join(problems),
        source,
        "fix the field(s) named above; docs/config.md lists every field and "
        "examples/config.yaml shows them in use",
    )


def _field_path(loc: tuple[str, ...]) -> tuple[str, ...]:
    """The config field an error is about: pydantic's location without the union-branch labels
    and list indices that follow a leaf field (``data.patch_size.int`` -> ``data.patch_size``)."""
    path: list[str] = []
    model: type[BaseModel] | None = RunConfig
    for part in loc:
        if model is None:
            break
        path.append(part)
        field = model.model_fields.get(part)
        model = _submodel(field.annotation) if field is not None else None
    return tuple(path)


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (``X``, ``X | None``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _submodel(arg)
        if found is not None:
            return found
    return None


def _fields_at(loc: tuple[str, ...]) -> list[str]:
    model: Any = RunConfig
    for part in loc:
        model = _submodel(model.model_fields[part].annotation) if model else None
    return sorted(model.model_fields) if model else []


def _lookup(values: Mapping[str, Any], loc: tuple[str, ...]) -> bool:
    node: Any = values
    for part in loc:
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True
