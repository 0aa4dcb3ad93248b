"""One registry for every architecture: ``@register_model(name)`` on a builder function.

A builder is ``builder(num_classes, in_channels, *, option=default, ...) -> SegmentationModel``.
Its keyword-only parameters are the model's options; their type hints (checked by pydantic) are the
validation, so a config or the command line can pass ``base=32`` or ``padding="valid"`` and get a
clear error for anything else. Nothing outside this package knows a model by name: the engine
calls :func:`build_model` with the name it was given.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pydantic

from unetlab.errors import UnetlabError
from unetlab.models.base import SegmentationModel

Builder = Callable[..., SegmentationModel]

NOT_STORED_OPTIONS = frozenset({"pretrained"})
"""Options that only matter when a model is first built (its weights then live in the state
dict), so they are left out of ``model.spec`` and a checkpoint never re-downloads them."""


@dataclass(frozen=True)
class ModelEntry:
    """A registered architecture: its builder and its options with their defaults."""

    name: str
    builder: Builder
    options: dict[str, Any]
    validators: dict[str, pydantic.TypeAdapter]
    summary: str

    def describe_options(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in self.options.items()) or "(none)"


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Decorator: make ``builder`` available as ``build_model(name, ...)``."""

    def decorator(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model name '{name}' registered twice")
        params = inspect.signature(builder).parameters.values()
        options = {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}
        hints = typing.get_type_hints(builder, include_extras=True)
        validators = {key: pydantic.TypeAdapter(hints.get(key, Any)) for key in options}
        doc = (inspect.getdoc(builder) or "").split("\n", 1)[0]
        _REGISTRY[name] = ModelEntry(name, builder, options, validators, doc)
        return builder

    return decorator


def list_models() -> list[str]:
    """Names of all registered architectures, sorted."""
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    """The registry entry of ``name``; a :class:`UnetlabError` listing the names if unknown."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnetlabError(
            f"unknown model '{name}'",
            hint=f"choose one of: {', '.join(list_models())}",
        ) from None


def model_options(name: str) -> dict[str, Any]:
    """The options of a model with their defaults."""
    return dict(get_entry(name).options)


def _check_count(what: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UnetlabError(f"{what} must be a whole number >= 1, got {value!r}")
    return value


def _validate(entry: ModelEntry, key: str, value: Any) -> Any:
    """Check one option against its type hint (converting e.g. ``"32"`` from a command line)."""
    try:
        return entry.validators[key].validate_python(value)
    except pydantic.ValidationError as exc:
        problem = "; ".join(err["msg"] for err in exc.errors())
        raise UnetlabError(
            f"invalid option for model '{entry.name}': {key}={value!r}: {problem}",
            hint=f"options of '{entry.name}' (with defaults): {entry.describe_options()}",
        ) from None


def build_model(
    name: str, num_classes: int, in_channels: int = 3, **options: Any
) -> SegmentationModel:
    """Build a registered architecture.

    Returns a :class:`SegmentationModel` (a plain ``nn.Module``) mapping
    ``N x in_channels x H x W`` to logits ``N x num_classes x H' x W'``, with ``size_multiple``
    and ``spec`` attributes (``spec`` is what a checkpoint stores to rebuild it).

    Raises:
        UnetlabError: unknown name, unknown option or an invalid option value.
    """
    entry = get_entry(name)
    num_classes = _check_count("num_classes", num_classes)
    in_channels = _check_count("in_channels", in_channels)
    unknown = sorted(set(options) - set(entry.options))
    if unknown:
        raise UnetlabError(
            f"model '{name}' has no option {', '.join(map(repr, unknown))}",
            hint=f"options of '{name}' (with defaults): {entry.describe_options()}",
        )
    checked = {key: _validate(entry, key, value) for key, value in options.items()}
    model = entry.builder(num_classes, in_channels, **checked)
    model.spec = {
        "name": name,
        "num_classes": num_classes,
        "in_channels": in_channels,
        "options": {k: v for k, v in checked.items() if k not in NOT_STORED_OPTIONS},
    }
    return model
