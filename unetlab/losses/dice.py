"""Soft Dice and its F-beta generalisation, on probabilities pooled over the batch.

Per class c, with p the predicted probability, y the one-hot truth and m the pixel mask
(0 on ignored pixels, times the per-pixel weight when one is given), summed over the batch:

    tp = sum(p y m),  fp = sum(p (1 - y) m),  fn = sum((1 - p) y m)
    F_beta(c) = ((1 + beta^2) tp + smooth) / ((1 + beta^2) tp + beta^2 fn + fp + smooth)

beta = 1 gives the soft Dice 2 sum(p y) / (sum p + sum y). The loss is 1 minus the (class
weighted) mean of F_beta over the classes, background optionally left out. ``smooth`` keeps a
class absent from the batch and from the prediction at score 1 instead of 0/0.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from unetlab.errors import UnetlabError
from unetlab.inference.labels import probabilities_from_logits
from unetlab.losses.inputs import check_inputs
from unetlab.losses.pixelwise import as_class_vector


class FBetaLoss(nn.Module):
    """1 - mean over classes of the soft F-beta score (soft Dice for beta = 1).

    Works for softmax models and 1-channel sigmoid models alike through
    :func:`unetlab.inference.labels.probabilities_from_logits` (a binary model scores
    background and foreground).
    """

    class_weights: torch.Tensor  # a buffer: one weight per scored class

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = 255,
        class_weights: Sequence[float] | torch.Tensor | None = None,
        beta: float = 1.0,
        smooth: float = 1.0,
        include_background: bool = True,
    ):
        super().__init__()
        if beta <= 0:
            raise UnetlabError(f"the Dice/F-beta 'beta' must be > 0, got {beta}.")
        if smooth < 0:
            raise UnetlabError(f"the Dice 'smooth' must be >= 0, got {smooth}.")
        if not include_background and num_classes < 2:
            raise UnetlabError("include_background=False leaves no class to score.")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.beta2 = float(beta) ** 2
        self.smooth = float(smooth)
        self.first_class = 0 if include_background else 1
        weights = as_class_vector(class_weights, num_classes, "class_weights")
        if weights is None:
            weights = torch.ones(num_classes)
        weights = weights[self.first_class :]
        if float(weights.sum()) == 0.0:
            raise UnetlabError("the class weights of the scored classes are all zero.")
        self.register_buffer("class_weights", weights, persistent=False)

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        target, mask = check_inputs(logits, target, weight, self.num_classes, self.ignore_index)
        if weight is not None:
            mask = mask * weight.float()
        probabilities = probabilities_from_logits(logits, channel_axis=1)
        one_hot = torch.zeros_like(probabilities).scatter_(1, target.unsqueeze(1), 1.0)
        mask = mask.unsqueeze(1)
        dims = (0, 2, 3)
        tp = (probabilities * one_hot * mask).sum(dims)
        predicted = (probabilities * mask).sum(dims)
        actual = (one_hot * mask).sum(dims)
        fp, fn = predicted - tp, actual - tp
        numerator = (1.0 + self.beta2) * tp + self.smooth
        denominator = (1.0 + self.beta2) * tp + self.beta2 * fn + fp + self.smooth
        score = (numerator / denominator.clamp_min(1e-12))[self.first_class :]
        class_weights = self.class_weights.to(score.device)  # also if the loss was not moved
        return 1.0 - (score * class_weights).sum() / class_weights.sum()
