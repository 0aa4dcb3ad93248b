"""Turning a :class:`RunConfig` and the checked dataset into the objects a run trains with.

Each builder is a small function with one job, so the trainer reads as a sequence of steps and
a notebook user can call the same pieces (e.g. ``build_optimizer``) on their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from unetlab.data.preprocess import Normalization
from unetlab.engine.config import METRICS, NormalizationConfig, RunConfig
from unetlab.errors import UnetlabError

if TYPE_CHECKING:
    from unetlab.models import SegmentationModel


@dataclass(frozen=True)
class DataSpec:
    """What the run learnt from the data: stored in every checkpoint for predict and export."""

    num_classes: int  # classes scored (2 for a binary sigmoid model)
    class_names: list[str]
    class_colors: list[list[int]]
    in_channels: int
    normalization: Normalization

    def to_checkpoint(self) -> dict[str, Any]:
        return {
            "class_names": list(self.class_names),
            "class_colors": [list(c) for c in self.class_colors],
            **self.normalization.to_dict(),
        }


def resolve_data(cfg: RunConfig, report: Any) -> tuple[RunConfig, DataSpec]:
    """Fill the config's automatic fields (classes, channels, normalisation) from the
    :class:`~unetlab.data.validate.DatasetReport`; returns the resolved config and the spec."""
    num_classes = cfg.data.num_classes or report.num_classes
    names = cfg.data.class_names or report.class_names
    if len(names) != num_classes:
        raise UnetlabError(
            f"data.class_names has {len(names)} names but there are {num_classes} classes",
            cfg.data.root,
            "give one name per class, in index order (or leave data.class_names empty)",
        )
    from unetlab.fs.text import check_unique_class_names

    check_unique_class_names(list(names), "data.class_names" if cfg.data.class_names else None)
    if cfg.binary and num_classes != 2:
        raise UnetlabError(
            f"loss '{cfg.loss.name}' is for binary masks (classes 0 and 1) but the data has "
            f"{num_classes} classes",
            cfg.data.root,
            "use loss 'ce' (or 'ce_dice') for more than two classes",
        )
    in_channels = cfg.model.in_channels or report.in_channels or 3
    if cfg.data.normalization is not None:
        norm = Normalization(tuple(cfg.data.normalization.mean), tuple(cfg.data.normalization.std))
        if len(norm.mean) != in_channels:
            raise UnetlabError(
                f"data.normalization has {len(norm.mean)} values per statistic but the images "
                f"have {in_channels} channel(s)",
                cfg.data.root,
                "give one mean and one std per channel, or leave data.normalization empty",
            )
    else:
        norm = Normalization.default_for(in_channels)
    metrics = [*METRICS, *(f"iou_{name}" for name in names)]
    if cfg.train.best_metric not in metrics:
        raise UnetlabError(
            f"train.best_metric {cfg.train.best_metric!r} is not measured by this run",
            hint=f"use one of {', '.join(metrics)}",
        )
    colors = [list(c) for c in report.info.colors[:num_classes]]
    resolved = cfg.model_copy(deep=True)
    resolved.data.num_classes = num_classes
    resolved.data.class_names = list(names)
    resolved.data.normalization = NormalizationConfig(mean=list(norm.mean), std=list(norm.std))
    resolved.model.in_channels = in_channels
    return resolved, DataSpec(num_classes, list(names), colors, in_channels, norm)


def build_network(cfg: RunConfig, pretrained: bool) -> SegmentationModel:
    """The model of ``cfg`` (one output channel for a binary loss). With ``pretrained`` (when a
    run starts; a resumed run has its own weights): encoder weights from ``model.pretrained``,
    then whole-model weights from ``model.init_weights``; the loaders' key reports are kept as
    ``model.pretrained_report`` and ``model.init_report``."""
    from unetlab.models import build_model, load_model_weights

    options = dict(cfg.model.options)
    if pretrained and cfg.model.pretrained:
        options["pretrained"] = cfg.model.pretrained
    from unetlab.artifacts.card import channels_for_classes

    outputs = channels_for_classes(int(cfg.data.num_classes or 2), single_channel=cfg.binary)
    model = build_model(
        cfg.model.name, outputs, in_channels=cfg.model.in_channels or 3, **options
    )
    if pretrained and cfg.model.init_weights:
        model.init_report = load_model_weights(model, cfg.model.init_weights)
    return model


def check_patch_size(model: SegmentationModel, patch: tuple[int, int], model_name: str) -> None:
    """Training crops must fit the network exactly; name the nearest legal sizes if not."""
    from unetlab.models.padding import is_valid_input_size, nearest_multiples, valid_output_size

    if getattr(model, "padding", "same") == "valid":
        for side in patch:
            if not is_valid_input_size(side, model.depth):
                try:
                    valid_output_size(side, model.depth)
                except UnetlabError as exc:
                    raise UnetlabError(
                        f"data.patch_size {patch[0]}x{patch[1]} does not fit '{model_name}' "
                        f"(valid padding): {exc.message}",
                        hint="set data.patch_size to one of the legal sides named above",
                    ) from None
        return
    multiple = int(getattr(model, "size_multiple", 1))
    if patch[0] % multiple or patch[1] % multiple:
        lo_h, hi_h = nearest_multiples(patch[0], multiple)
        lo_w, hi_w = nearest_multiples(patch[1], multiple)
        raise UnetlabError(
            f"data.patch_size {patch[0]}x{patch[1]} is not a multiple of {multiple}, which "
            f"'{model_name}' needs (it halves the image {multiple.bit_length() - 1} times); "
            f"nearest legal sizes: {lo_h}x{lo_w} or {hi_h}x{hi_w}",
            hint=f"set data.patch_size to {lo_h} or {hi_h} (e.g. --set data.patch_size={hi_h})",
        )


def class_weights(cfg: RunConfig, report: Any, num_classes: int) -> list[float] | None:
    """``loss.class_weights``: None, an explicit list, or ``auto`` from the training split's
    pixel counts (method ``loss.class_weight_method``)."""
    weights = cfg.loss.class_weights
    if weights is None:
        return None
    if weights == "auto":
        from unetlab.losses import class_weights_from_frequencies

        counts = report.class_pixels[cfg.data.train_split]
        weights_auto = class_weights_from_frequencies(counts, cfg.loss.class_weight_method)
        return [float(w) for w in weights_auto]
    if len(weights) != num_classes:
        raise UnetlabError(
            f"loss.class_weights has {len(weights)} values but there are {num_classes} classes",
            hint="give one weight per class, or 'auto'",
        )
    return [float(w) for w in weights]


def build_criterion(cfg: RunConfig, report: Any, num_classes: int) -> nn.Module:
    from unetlab.losses import build_loss

    if cfg.loss.name == "weighted_ce" and cfg.loss.weight_map is None:
        raise UnetlabError(
            "loss 'weighted_ce' needs per-pixel weights, but loss.weight_map is not set",
            hint="set loss.weight_map (e.g. --set loss.weight_map.w0=10) or use loss 'ce'",
        )
    return build_loss(
        cfg.loss.name,
        num_classes,
        class_weights=class_weights(cfg, report, num_classes),
        **cfg.loss.options,
    )


def build_optimizer(cfg: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    """All parameters go in; frozen ones simply have no gradient and are skipped by the step."""
    o = cfg.optim
    params = list(model.parameters())
    if o.name == "sgd":
        return torch.optim.SGD(
            params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay
        )
    if o.nesterov:
        raise UnetlabError(f"optim.nesterov applies to sgd only, not {o.name}")
    factory = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
    return factory(params, lr=o.lr, weight_decay=o.weight_decay)


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """Training's autocast dtype: as :func:`unetlab.inference.precision.autocast_dtype`, except
    that ``auto`` stays fp32 on CPUs (bf16 training there is opt-in: ``train.amp: bf16``)."""
    from unetlab.inference.precision import autocast_dtype

    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    return autocast_dtype(amp, device, name="train.amp")


def use_channels_last(setting: str | bool, device: torch.device, amp: torch.dtype | None) -> bool:
    """``train.channels_last``: ``auto`` is NHWC on CPUs (oneDNN's fast layout) and on GPUs
    under mixed precision (tensor cores), the default layout elsewhere."""
    if setting != "auto":
        return bool(setting)
    return device.type == "cpu" or amp is not None


def weight_map_options(cfg: RunConfig) -> dict[str, Any] | None:
    wm = cfg.loss.weight_map
    return None if wm is None else {"w0": wm.w0, "sigma": wm.sigma,
                                    "object_classes": list(wm.object_classes),
                                    "class_balance": wm.class_balance}
