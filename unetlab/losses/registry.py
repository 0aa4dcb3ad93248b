"""One registry of losses: ``build_loss(name, num_classes, ...)`` with validated options.

Each entry is a small factory whose keyword arguments are the loss's options, so the list of
valid options shown in an error is read from the factory itself and cannot drift.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import torch
from torch import nn

from unetlab.artifacts.card import classes_for_channels
from unetlab.errors import UnetlabError
from unetlab.losses.dice import FBetaLoss
from unetlab.losses.pixelwise import PixelwiseLoss

ClassWeights = Sequence[float] | torch.Tensor | None


class WeightedSum(nn.Module):
    """sum_i weight_i * loss_i(logits, target, weight): e.g. CE + Dice."""

    def __init__(self, terms: Sequence[tuple[float, nn.Module]]):
        super().__init__()
        self.term_weights = [float(w) for w, _ in terms]
        self.terms = nn.ModuleList(loss for _, loss in terms)

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        return sum(
            w * loss(logits, target, weight)
            for w, loss in zip(self.term_weights, self.terms, strict=True)
        )


def _ce(num_classes: int, ignore_index: int, class_weights: ClassWeights) -> nn.Module:
    return PixelwiseLoss(num_classes, ignore_index, class_weights)


def _weighted_ce(num_classes: int, ignore_index: int, class_weights: ClassWeights) -> nn.Module:
    return PixelwiseLoss(num_classes, ignore_index, class_weights, require_weight=True)


def _bce(
    num_classes: int,
    ignore_index: int,
    class_weights: ClassWeights,
    pos_weight: float | None = None,
) -> nn.Module:
    if num_classes != 2:
        raise UnetlabError(
            f"'bce' is for binary masks (classes 0 and 1) but num_classes is {num_classes}.",
            hint="use 'ce' (softmax cross-entropy) for more than two classes.",
        )
    if pos_weight is not None and pos_weight <= 0:
        raise UnetlabError(f"'pos_weight' must be > 0, got {pos_weight}.")
    factor = None if pos_weight is None else [1.0, float(pos_weight)]
    return _BinaryOnly(PixelwiseLoss(2, ignore_index, class_weights, factor=factor))


def _focal(
    num_classes: int,
    ignore_index: int,
    class_weights: ClassWeights,
    alpha: float | Sequence[float] | None = None,
    gamma: float = 2.0,
) -> nn.Module:
    if isinstance(alpha, int | float):
        if not 0.0 <= alpha <= 1.0:
            raise UnetlabError(f"a scalar focal 'alpha' must be in [0, 1], got {alpha}.")
        # RetinaNet's binary alpha, generalised: alpha for every foreground class, 1 - alpha
        # for the background class 0.
        alpha = [1.0 - alpha] + [float(alpha)] * (num_classes - 1)
    return PixelwiseLoss(num_classes, ignore_index, class_weights, factor=alpha, gamma=gamma)


def _dice(
    num_classes: int,
    ignore_index: int,
    class_weights: ClassWeights,
    beta: float = 1.0,
    smooth: float = 1.0,
    include_background: bool = True,
) -> nn.Module:
    return FBetaLoss(num_classes, ignore_index, class_weights, beta, smooth, include_background)


def _ce_dice(
    num_classes: int,
    ignore_index: int,
    class_weights: ClassWeights,
    ce_weight: float = 1.0,
    dice_weight: float = 1.0,
    beta: float = 1.0,
    smooth: float = 1.0,
    include_background: bool = True,
) -> nn.Module:
    dice = _dice(num_classes, ignore_index, class_weights, beta, smooth, include_background)
    return WeightedSum(
        [(ce_weight, _ce(num_classes, ignore_index, class_weights)), (dice_weight, dice)]
    )


class _BinaryOnly(nn.Module):
    """Refuses multi-channel logits, so 'bce' on a softmax model fails loudly."""

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        if logits.dim() != 4 or logits.shape[1] != 1:
            raise UnetlabError(
                f"'bce' needs a model with 1 output channel, got logits of shape "
                f"{tuple(logits.shape)}.",
                hint="build the model with 1 output class for sigmoid outputs, or use 'ce'.",
            )
        return self.loss(logits, target, weight)


LOSSES: dict[str, Callable[..., nn.Module]] = {
    "ce": _ce,
    "bce": _bce,
    "dice": _dice,
    "ce_dice": _ce_dice,
    "focal": _focal,
    "weighted_ce": _weighted_ce,
}

_FIXED_ARGUMENTS = ("num_classes", "ignore_index", "class_weights")


def list_losses() -> dict[str, dict[str, object]]:
    """Loss names -> their options with default values."""
    return {
        name: {
            p.name: p.default
            for p in inspect.signature(factory).parameters.values()
            if p.name not in _FIXED_ARGUMENTS
        }
        for name, factory in LOSSES.items()
    }


def build_loss(
    name: str,
    num_classes: int,
    ignore_index: int = 255,
    class_weights: ClassWeights = None,
    **options: object,
) -> nn.Module:
    """Build the loss ``name``; call it as ``loss(logits, target, weight=None)``.

    ``logits`` N x C x H x W (C = num_classes, or 1 for a sigmoid binary model; num_classes 1
    is read as binary, i.e. 2), ``target``
    N x H x W class indices (``ignore_index`` pixels contribute nothing), ``weight`` an
    optional N x H x W per-pixel weight map (required by ``weighted_ce``). See
    :func:`list_losses` for the options of each loss.
    """
    valid = list_losses()
    if name not in valid:
        raise UnetlabError(f"unknown loss '{name}'.", hint=f"use one of {sorted(valid)}.")
    unknown = sorted(set(options) - set(valid[name]))
    if unknown:
        allowed = sorted(valid[name]) or "none"
        raise UnetlabError(
            f"unknown option(s) {unknown} for the loss '{name}'.",
            hint=f"valid options of '{name}': {allowed}.",
        )
    if int(num_classes) < 1:
        raise UnetlabError(f"num_classes must be >= 1, got {num_classes}.")
    # 1 output channel means a binary task (a sigmoid model): background and foreground are scored.
    scored = classes_for_channels(num_classes)
    return LOSSES[name](scored, int(ignore_index), class_weights, **options)
