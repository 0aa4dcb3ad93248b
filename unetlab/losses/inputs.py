"""Checks and helpers shared by every loss: shapes, target range, ignore mask, probabilities.

Losses run inside the training loop, so a wrong target (a 0/255 mask, a class id beyond the
model's outputs, a mask the size of the input under a valid-padding model) must stop with a
readable :class:`UnetlabError` instead of a CUDA device-side assert or silently wrong numbers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unetlab.artifacts.card import classes_for_channels
from unetlab.errors import UnetlabError


def check_inputs(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    num_classes: int,
    ignore_index: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate ``logits``/``target``/``weight``; return (target as int64 with ignored pixels
    set to 0, float mask of the pixels that count).

    One range check per call (a single device sync) keeps this cheap.
    """
    if logits.dim() != 4 or target.dim() != 3:
        raise UnetlabError(
            f"a loss expects logits N x C x H x W and a target N x H x W, got logits of shape "
            f"{tuple(logits.shape)} and a target of shape {tuple(target.shape)}."
        )
    if logits.shape[0] != target.shape[0] or logits.shape[2:] != target.shape[1:]:
        raise UnetlabError(
            f"the model output {tuple(logits.shape[2:])} and the mask {tuple(target.shape[1:])} "
            f"differ in size (batch {logits.shape[0]} vs {target.shape[0]}).",
            hint="a valid-padding U-Net shrinks its output: crop the mask to the output size "
            "(see unetlab.models.padding), or use padding 'same'.",
        )
    channels = logits.shape[1]
    if classes_for_channels(channels) != num_classes:  # 1 sigmoid channel scores 2 classes
        raise UnetlabError(
            f"the loss was built for {num_classes} classes but the model outputs {channels} "
            "channels.",
            hint="give the loss and the model the same number of classes (a binary model may "
            "have 1 output channel).",
        )
    if weight is not None and tuple(weight.shape) != tuple(target.shape):
        raise UnetlabError(
            f"the per-pixel weight map has shape {tuple(weight.shape)} but the target has "
            f"shape {tuple(target.shape)}.",
            hint="compute one weight map per mask (unetlab.losses.unet_weight_map).",
        )
    target = target.long()
    valid = target != ignore_index
    bad = valid & ((target < 0) | (target >= num_classes))
    if bool(bad.any()):
        values = torch.unique(target[bad]).tolist()[:10]
        raise UnetlabError(
            f"the mask holds class values {values} but the loss has {num_classes} classes "
            f"(0..{num_classes - 1}, {ignore_index} = ignore).",
            hint="check the number of classes, or re-map the mask values to 0..K-1 "
            f"({ignore_index} marks pixels to ignore).",
        )
    return target.masked_fill(~valid, 0), valid.float()


def log_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """N x K x H x W logits -> N x max(K, 2) x H x W log class probabilities (float32).

    The log-space twin of :func:`unetlab.inference.labels.probabilities_from_logits`: one
    channel means sigmoid (background, foreground), more means softmax. Computing logs
    directly (logsigmoid / log_softmax) keeps the losses finite for confident logits.
    """
    logits = logits.float()
    if logits.shape[1] == 1:
        return torch.cat([F.logsigmoid(-logits), F.logsigmoid(logits)], dim=1)
    return F.log_softmax(logits, dim=1)


def weighted_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum(w * v) / sum(w); 0 (still differentiable) when every weight is 0, e.g. an all-ignored
    batch, so training never sees NaN from an empty crop."""
    return (values * weights).sum() / weights.sum().clamp_min(1e-12)
