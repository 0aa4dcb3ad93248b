"""The deep-supervision loss: the main logits and each auxiliary head scored alike, with weights
halving per level (nnU-Net's 1, 1/2, 1/4, ... normalised to sum to 1)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def deep_supervision_weights(aux_levels: int) -> list[float]:
    """Weights of the main output and ``aux_levels`` auxiliary ones, finest first: 2**-i,
    normalised, so adding heads never changes the loss's scale."""
    raw = [0.5**i for i in range(aux_levels + 1)]
    total = sum(raw)
    return [w / total for w in raw]


def deep_supervision_loss(
    criterion: Callable[..., torch.Tensor],
    logits: torch.Tensor,
    aux: Sequence[torch.Tensor],
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(total, main)``: ``criterion`` on the logits (``main``, what a run logs as its train
    loss, comparable with the val loss) and the total to train on, which adds every auxiliary
    output (already at the logits' size) at the weights of :func:`deep_supervision_weights`.
    With no auxiliary output both are ``criterion(logits, target, weight=weight)``."""
    main = criterion(logits, target, weight=weight)
    if not aux:
        return main, main
    weights = deep_supervision_weights(len(aux))
    total = weights[0] * main
    for w, out in zip(weights[1:], aux, strict=True):
        total = total + w * criterion(out, target, weight=weight)
    return total, main
