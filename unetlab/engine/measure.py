"""The measuring loop of training validation: a confusion matrix (and the loss) over a loader.

Logits come from :func:`unetlab.inference.forward.predict_logits` (whole image, or tiles above
the tile size, by the rule ``predict`` uses) and labels from
:func:`unetlab.inference.labels.labels_from_logits`, the rule predict, evaluate and the ONNX
predictor use. It works on the normalised tensors the trainer's loaders yield, on the
training device, and sums over processes when distributed. ``unetlab evaluate`` scores saved
models through the predictor instead (:mod:`unetlab.engine.evaluate`), on the files themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from unetlab import IGNORE_INDEX
from unetlab.artifacts.card import classes_for_channels
from unetlab.artifacts.geometry import unwrap
from unetlab.errors import UnetlabError
from unetlab.inference.forward import predict_logits
from unetlab.inference.labels import labels_from_logits
from unetlab.metrics import ConfusionMatrix

BatchHook = Callable[[dict[str, Any], torch.Tensor], None]
LossFn = Callable[..., torch.Tensor]


@dataclass
class Measurement:
    """What one pass over a loader measured (summed over all processes when distributed).

    ``matrix``: the confusion matrix of every non-ignored pixel; ``loss``: the mean of
    ``loss_fn`` over the images (None without a ``loss_fn``); ``num_images``: images seen.
    """

    matrix: ConfusionMatrix
    loss: float | None
    num_images: int


def collect_confusion(
    model: nn.Module,
    loader: Iterable[dict[str, Any]],
    num_classes: int,
    device: str | torch.device,
    *,
    autocast_dtype: torch.dtype | None = None,
    threshold: float | None = None,
    loss_fn: LossFn | None = None,
    tta: bool | str = False,
    on_batch: BatchHook | None = None,
) -> Measurement:
    """Run ``model`` over ``loader`` (batches of sample dicts) and count its confusion matrix.

    Logits at input size come from ``predict_logits`` (``tta`` as there; a DDP wrapper is
    looked through), labels from ``labels_from_logits`` (``threshold`` for binary models).
    With ``loss_fn`` (called as ``loss_fn(logits, mask, weight=...)``, like the trainer's loss)
    the mean loss per image is measured too. ``on_batch(batch, labels)`` sees each batch with
    its predicted labels (on ``device``). When ``torch.distributed`` is initialised every rank
    gets the totals of all ranks (each rank must call this). Runs in eval mode under
    ``torch.inference_mode``, then restores each module's mode (a frozen encoder stays in eval).
    """
    device = torch.device(device)
    network = unwrap(model)
    matrix = ConfusionMatrix(num_classes, ignore_index=IGNORE_INDEX)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)  # on device: no sync/batch
    num_images = 0
    modes = {module: module.training for module in network.modules()}
    network.eval()
    try:
        with torch.inference_mode():
            for batch in loader:
                images = batch["image"].to(device, non_blocking=True)
                masks = batch["mask"].to(device, non_blocking=True).long()
                with torch.autocast(
                    device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None
                ):
                    logits = predict_logits(network, images, tta=tta)
                    if loss_fn is not None:
                        weight = batch.get("weight")
                        weight = None if weight is None else weight.to(device, non_blocking=True)
                        loss = loss_fn(logits, masks, weight=weight)
                        loss_sum += loss.detach().double() * len(images)
                predicted = classes_for_channels(logits.shape[1])
                if predicted != num_classes:
                    raise UnetlabError(
                        f"the model predicts {predicted} classes but {num_classes} are scored",
                        hint="score with the number of classes the model was trained for",
                    )
                labels = labels_from_logits(logits, threshold, channel_axis=1)
                matrix.update(labels, masks)
                num_images += len(images)
                if on_batch is not None:
                    on_batch(batch, labels)
    finally:
        for module, training in modes.items():
            module.train(training)

    totals = torch.stack([loss_sum, torch.tensor(float(num_images), device=device).double()])
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        matrix.all_reduce()
        on_cpu = torch.distributed.get_backend() != "nccl"
        totals = totals.cpu() if on_cpu else totals
        torch.distributed.all_reduce(totals)
    total_loss, num_images = float(totals[0]), int(totals[1])
    mean_loss = total_loss / num_images if loss_fn is not None and num_images else None
    return Measurement(matrix=matrix, loss=mean_loss, num_images=num_images)
