"""A streaming confusion matrix: update per batch, merge or all-reduce across processes.

Counting pixels (one ``bincount`` per batch, on the batch's device) instead of averaging
per-image scores makes the result independent of batch size, order and process count, so a
distributed validation gives exactly the single-process numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from unetlab.errors import UnetlabError
from unetlab.metrics.scores import format_scores_table, scores_from_matrix

LabelArray = torch.Tensor | np.ndarray


def as_label_tensor(labels: LabelArray, what: str) -> torch.Tensor:
    """Class labels (torch or numpy, any integer dtype) as an int64 tensor."""
    if isinstance(labels, torch.Tensor):
        if labels.is_floating_point():
            raise UnetlabError(
                f"the confusion matrix expects class labels as {what}, got a float tensor.",
                hint="turn logits into labels first (unetlab.inference.labels."
                "labels_from_logits).",
            )
        return labels.detach().long()
    array = np.asarray(labels)
    if not (np.issubdtype(array.dtype, np.integer) or array.dtype == bool):
        raise UnetlabError(
            f"the confusion matrix expects integer class labels as {what}, got {array.dtype}."
        )
    return torch.from_numpy(array.astype(np.int64))


class ConfusionMatrix:
    """K x K pixel counts, rows = truth, columns = prediction; ``ignore_index`` truth pixels
    are skipped."""

    def __init__(self, num_classes: int, ignore_index: int = 255):
        if num_classes < 1:
            raise UnetlabError(f"num_classes must be >= 1, got {num_classes}.")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self._counts = torch.zeros(self.num_classes**2, dtype=torch.int64)

    def update(self, pred: LabelArray, target: LabelArray) -> ConfusionMatrix:
        """Add the pixels of one batch (``pred`` and ``target`` of the same shape)."""
        pred, target = as_label_tensor(pred, "prediction"), as_label_tensor(target, "target")
        if pred.shape != target.shape:
            raise UnetlabError(
                f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape.",
                hint="compare each prediction with the mask of the same image at the same size.",
            )
        pred = pred.to(target.device)
        keep = target != self.ignore_index
        truth, predicted = target[keep], pred[keep]
        k = self.num_classes
        bad = (truth < 0) | (truth >= k) | (predicted < 0) | (predicted >= k)
        if bool(bad.any()):
            both = torch.cat([truth[bad], predicted[bad]])
            values = torch.unique(both[(both < 0) | (both >= k)]).tolist()[:10]
            raise UnetlabError(
                f"labels {values} are outside the {k} classes 0..{k - 1} "
                f"(only the target may hold the ignore value {self.ignore_index}).",
                hint="check the number of classes and the mask values.",
            )
        if self._counts.device != truth.device:
            self._counts = self._counts.to(truth.device)
        self._counts += torch.bincount(truth * k + predicted, minlength=k * k)
        return self

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another matrix's counts (e.g. from another process or data shard)."""
        if other.num_classes != self.num_classes:
            raise UnetlabError(
                f"cannot merge confusion matrices of {self.num_classes} and "
                f"{other.num_classes} classes."
            )
        self._counts += other._counts.to(self._counts.device)
        return self

    def all_reduce(self) -> ConfusionMatrix:
        """Sum the counts over all torch.distributed ranks; a no-op outside distributed runs."""
        if not (dist.is_available() and dist.is_initialized()):
            return self
        counts = self._counts
        if dist.get_backend() == "nccl" and counts.device.type != "cuda":
            counts = counts.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(counts, op=dist.ReduceOp.SUM)
        self._counts = counts.to(self._counts.device)
        return self

    def reset(self) -> None:
        self._counts.zero_()

    @property
    def matrix(self) -> np.ndarray:
        """K x K int64 counts, rows = truth, columns = prediction (a copy)."""
        return self._counts.cpu().numpy().reshape(self.num_classes, self.num_classes).copy()

    @property
    def total(self) -> int:
        """Counted (non-ignored) pixels."""
        return int(self._counts.sum())

    def compute(self) -> dict[str, Any]:
        """Per-class IoU, recall (PA), precision, Dice and their means, pixel accuracy, fwIoU
        (see :mod:`unetlab.metrics.scores`)."""
        return scores_from_matrix(self.matrix)

    def format_table(self, class_names: Sequence[str] | None = None) -> str:
        """The scores as a plain-text table, one row per class (names in class-index order)."""
        return format_scores_table(self.compute(), class_names)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state: ``num_classes``, ``ignore_index`` and the matrix as nested lists."""
        return {
            "num_classes": self.num_classes,
            "ignore_index": self.ignore_index,
            "matrix": self.matrix.tolist(),
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> ConfusionMatrix:
        """Rebuild a matrix saved with :meth:`to_dict`."""
        try:
            result = cls(int(state["num_classes"]), int(state.get("ignore_index", 255)))
            matrix = np.asarray(state["matrix"], dtype=np.int64)
        except (KeyError, TypeError, ValueError) as exc:
            raise UnetlabError(f"not a saved confusion matrix: {exc}") from exc
        if matrix.shape != (result.num_classes, result.num_classes) or (matrix < 0).any():
            raise UnetlabError(
                f"a saved confusion matrix for {result.num_classes} classes has shape "
                f"{matrix.shape} or negative counts."
            )
        result._counts = torch.from_numpy(matrix.ravel().copy())
        return result
