"""Test-time augmentation: predict on flipped/rotated copies, undo each transform, average.

Works on torch tensors and numpy arrays alike (``N x C x H x W``), so the torch predictor and the
torch-free ONNX Runtime predictor share it. Off by default: every transform costs a full
forward pass, which matters on CPU (nnU-Net users report ~8x slower inference with it on).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Array = Any  # torch.Tensor or np.ndarray, N x C x H x W
Network = Callable[[Array], Array]

MODES = ("hflip", "flips", "flips+rot90")
SPACES = ("logits", "probabilities")


def _flip(x: Array, axes: tuple[int, ...]) -> Array:
    if not axes:
        return x
    return np.flip(x, axes) if isinstance(x, np.ndarray) else x.flip(axes)


def _rot90(x: Array, k: int) -> Array:
    if k % 4 == 0:
        return x
    return np.rot90(x, k, axes=(2, 3)) if isinstance(x, np.ndarray) else x.rot90(k, (2, 3))


def transforms(mode: str | bool) -> list[tuple[int, tuple[int, ...]]]:
    """The (rotation quarter-turns, flipped axes) pairs of a TTA mode, identity first.

    ``hflip``: identity and the left-right mirror (images with an "up": streets, photos);
    ``flips``: the 4 mirror combinations; ``flips+rot90``: the 8 symmetries of the square.
    """
    mode = "flips" if mode is True else mode
    if mode == "hflip":
        return [(0, ()), (0, (3,))]
    if mode == "flips":
        return [(0, ()), (0, (3,)), (0, (2,)), (0, (2, 3))]
    if mode == "flips+rot90":
        return [(k, flip) for flip in ((), (3,)) for k in range(4)]
    raise ValueError(f"unknown TTA mode {mode!r}: use one of {MODES}")


def mode_from_flags(flips: bool | None, rot90: bool) -> bool | str | None:
    """The TTA mode of the ``--tta/--no-tta`` / ``--tta-rot90`` flags (and their API keywords);
    None (neither flag given): the model's own choice, see :func:`resolve_tta`."""
    if rot90:
        return "flips+rot90"
    if flips is None:
        return None
    return "flips" if flips else False


def resolve_tta(asked: bool | str | None, card: Any) -> bool | str:
    """The TTA a prediction uses: what was asked, else what the model's card stores (the run's
    ``inference.tta``, chosen by ``unetlab plan``), else none."""
    if asked is not None:
        return asked
    return card.tta if card is not None else False


def apply(x: Array, rotation: int, flip: tuple[int, ...]) -> Array:
    """Flip, then rotate by ``rotation`` quarter turns in the H-W plane."""
    return _rot90(_flip(x, flip), rotation)


def invert(y: Array, rotation: int, flip: tuple[int, ...]) -> Array:
    """Undo :func:`apply` on a network output (rotate back, then flip back)."""
    return _flip(_rot90(y, -rotation), flip)


def _to_probabilities(logits: Array) -> Array:
    if isinstance(logits, np.ndarray):
        logits = logits.astype(np.float32, copy=False)
        if logits.shape[1] == 1:
            return 1.0 / (1.0 + np.exp(-logits))
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)
    logits = logits.float()
    return logits.sigmoid() if logits.shape[1] == 1 else logits.softmax(dim=1)


def _to_logits(probabilities: Array) -> Array:
    """Averaged probabilities back to logits (same argmax/threshold decisions)."""
    eps = 1e-7
    if isinstance(probabilities, np.ndarray):
        p = np.clip(probabilities, eps, 1 - eps)
        return np.log(p / (1 - p)) if p.shape[1] == 1 else np.log(p)
    p = probabilities.clamp(eps, 1 - eps)
    return (p / (1 - p)).log() if p.shape[1] == 1 else p.log()


def with_tta(network: Network, mode: str | bool = "flips", space: str = "logits") -> Network:
    """Wrap ``network`` so it averages its outputs over the transforms of ``mode``.

    ``space="logits"`` averages raw logits; ``"probabilities"`` averages softmax (sigmoid for one
    channel) probabilities and returns their log (a valid logit for the same decision).
    """
    chosen = transforms(mode)
    if space not in SPACES:
        raise ValueError(f"unknown TTA space {space!r}: use one of {SPACES}")

    def averaged(x: Array) -> Array:
        total = None
        for rotation, flip in chosen:
            y = invert(network(apply(x, rotation, flip)), rotation, flip)
            if space == "probabilities":
                y = _to_probabilities(y)
            total = y if total is None else total + y
        assert total is not None  # transforms() always yields the identity
        mean = total / len(chosen)
        return _to_logits(mean) if space == "probabilities" else mean

    return averaged
