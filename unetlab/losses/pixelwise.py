"""Per-pixel likelihood losses: cross-entropy, binary CE, focal and the weight-map CE.

All four are one formula on the log-probability of the true class, log p_t:

    loss(x) = factor[t] * (1 - p_t)^gamma * (-log p_t)

(CE: factor 1, gamma 0; BCE: factor [1, pos_weight]; focal: factor alpha), averaged over the
pixels with weights ``class_weights[t] * weight(x)`` and the ignored pixels at weight 0:
``sum(w * loss) / sum(w)``. That is exactly ``F.cross_entropy(weight=class_weights)``'s mean,
and with the U-Net weight map it is the paper's energy normalised by the total weight, so the
loss stays on the CE scale whatever ``w0`` is.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from unetlab.errors import UnetlabError
from unetlab.losses.inputs import check_inputs, log_probabilities, weighted_mean


def as_class_vector(
    values: float | Sequence[float] | torch.Tensor | None, num_classes: int, what: str
) -> torch.Tensor | None:
    """Per-class values as a float32 vector of length ``num_classes`` (None stays None)."""
    if values is None:
        return None
    vector = torch.as_tensor(values, dtype=torch.float32).flatten()
    if vector.numel() != num_classes:
        raise UnetlabError(
            f"{what} has {vector.numel()} values but there are {num_classes} classes.",
            hint=f"give one {what} value per class, in class-index order.",
        )
    if not bool(torch.isfinite(vector).all()) or bool((vector < 0).any()):
        raise UnetlabError(f"{what} must be finite and >= 0, got {vector.tolist()}.")
    if float(vector.sum()) == 0.0:
        raise UnetlabError(f"{what} are all zero, so no pixel would count.")
    return vector


class PixelwiseLoss(nn.Module):
    """Weighted mean of ``factor[t] * (1 - p_t)^gamma * (-log p_t)`` over non-ignored pixels.

    Args:
        num_classes: classes in the masks (a 1-channel binary model has 2).
        ignore_index: mask value whose pixels contribute nothing.
        class_weights: per-class weights of the mean (as in ``F.cross_entropy(weight=...)``).
        factor: per-class factor inside the per-pixel loss (focal ``alpha``, BCE
            ``pos_weight``); unlike ``class_weights`` it is not normalised away.
        gamma: focal exponent; 0 gives cross-entropy.
        require_weight: the per-pixel ``weight`` map must be given (``weighted_ce``).
    """

    class_weights: torch.Tensor | None  # buffers (None: all ones)
    factor: torch.Tensor | None

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = 255,
        class_weights: Sequence[float] | torch.Tensor | None = None,
        factor: Sequence[float] | torch.Tensor | None = None,
        gamma: float = 0.0,
        require_weight: bool = False,
    ):
        super().__init__()
        if gamma < 0:
            raise UnetlabError(f"the focal gamma must be >= 0, got {gamma}.")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.gamma = float(gamma)
        self.require_weight = require_weight
        self.register_buffer(
            "class_weights",
            as_class_vector(class_weights, num_classes, "class_weights"),
            persistent=False,
        )
        self.register_buffer(
            "factor", as_class_vector(factor, num_classes, "factor"), persistent=False
        )

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        if weight is None and self.require_weight:
            raise UnetlabError(
                "the 'weighted_ce' loss needs a per-pixel weight map for every mask, got none.",
                hint="enable the U-Net weight map in the data settings (each sample then has a "
                "'weight'), or use the 'ce' loss.",
            )
        target, pixel_weights = check_inputs(
            logits, target, weight, self.num_classes, self.ignore_index
        )
        log_p = log_probabilities(logits).gather(1, target.unsqueeze(1)).squeeze(1)
        loss = -log_p
        if self.gamma > 0:
            # 1 - p_t, floored so that gamma < 1 keeps a finite gradient where p_t == 1
            loss = loss * (-torch.expm1(log_p)).clamp_min(1e-12).pow(self.gamma)
        if self.factor is not None:
            loss = loss * self.factor.to(target.device)[target]
        if self.class_weights is not None:
            pixel_weights = pixel_weights * self.class_weights.to(target.device)[target]
        if weight is not None:
            pixel_weights = pixel_weights * weight.float()
        return weighted_mean(loss, pixel_weights)
