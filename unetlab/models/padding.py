"""Input-size arithmetic and the padding that makes any image fit a U-Net.

A U-Net halves its feature maps ``depth`` times and doubles them back, so the decoder's
upsampled maps line up with the encoder's skips only for some input sizes:

- **same padding** (output = input size): every side must be a multiple of ``2**depth``
  (``size_multiple`` of the model). Training refuses other sizes (:func:`check_size`), inference
  reflect-pads up to the next multiple and crops back (:func:`pad_to_multiple`, :func:`crop_to`).
- **valid padding** (the 2015 paper: unpadded 3x3 convs): each conv pair trims 4 px, so a
  572 px input gives a 388 px output at depth 4. With ``b`` the size entering the bottleneck,
  ``input = 2**depth * b + 4 * (2**depth - 1)`` and ``output = 2**depth * (b - 4) - 4 *
  (2**depth - 1)``. The output is centred in the input, so inference mirror-pads the image by
  the missing border (the paper's overlap-tile strategy, :func:`pad_for_valid`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from unetlab.errors import UnetlabError

Pads = tuple[int, int, int, int]
"""``(left, right, top, bottom)`` in pixels, the order :func:`torch.nn.functional.pad` uses."""


def _border(depth: int) -> int:
    """Pixels that the valid convolutions remove along one axis between input and bottleneck,
    measured at input scale: ``4 * (2**depth - 1)``."""
    return 4 * (2**depth - 1)


def _min_bottleneck_output(depth: int) -> int:
    """Smallest bottleneck output ``c`` whose decoder output ``2**depth*c - border`` is >= 1."""
    return _border(depth) // 2**depth + 1


def is_valid_input_size(size: int, depth: int = 4) -> bool:
    """Whether a valid-padding U-Net of this depth accepts a side of ``size`` pixels: every
    pooling must see an even size and the decoder output must keep at least one pixel."""
    extra = size - _border(depth)
    if extra <= 0 or extra % 2**depth:
        return False
    return extra // 2**depth - 4 >= _min_bottleneck_output(depth)


def _legal_sizes_near(size: int, depth: int) -> tuple[int | None, int]:
    """The largest legal input below ``size`` (None if there is none) and the smallest above.

    Legal sides form the progression ``smallest + k * 2**depth``.
    """
    step, smallest = 2**depth, valid_input_size(1, depth)
    below = smallest + (size - 1 - smallest) // step * step if size > smallest else None
    above = smallest + max(0, math.ceil((size + 1 - smallest) / step)) * step
    return below, above


def valid_output_size(input_size: int, depth: int = 4) -> int:
    """Output side of a valid-padding U-Net for an input side (572 -> 388 at depth 4).

    Raises:
        UnetlabError: the size is not legal for this depth; the message names the nearest ones.
    """
    if not is_valid_input_size(input_size, depth):
        below, above = _legal_sizes_near(input_size, depth)
        nearest = f"{below} or {above}" if below is not None else f"{above} (the smallest)"
        raise UnetlabError(
            f"{input_size} px is not a legal input side for a valid-padding U-Net of depth "
            f"{depth}; nearest legal sides are {nearest}",
            hint="resize or crop to a legal size, or let predict pad the image "
            "(valid_input_size() gives the input needed for a wanted output)",
        )
    bottleneck_in = (input_size - _border(depth)) // 2**depth
    return 2**depth * (bottleneck_in - 4) - _border(depth)


def valid_input_size(output_size: int, depth: int = 4) -> int:
    """Smallest legal input side whose valid-padding output is at least ``output_size``.

    >>> valid_input_size(388)
    572
    """
    if output_size < 1:
        raise UnetlabError(f"output size must be at least 1 px, got {output_size}")
    bottleneck_out = max(
        math.ceil((output_size + _border(depth)) / 2**depth), _min_bottleneck_output(depth)
    )
    return 2**depth * (bottleneck_out + 4) + _border(depth)


def nearest_multiples(size: int, multiple: int) -> tuple[int, int]:
    """The multiples of ``multiple`` just below (at least ``multiple``) and at or above ``size``."""
    below = max(multiple, (size // multiple) * multiple)
    above = math.ceil(size / multiple) * multiple
    return below, max(above, multiple)


def check_size(h: int, w: int, multiple: int, path: str | Path | None = None) -> None:
    """Refuse an image whose sides are not multiples of ``multiple`` (training needs exact sizes:
    padding would teach the network the padded borders).

    Raises:
        UnetlabError: naming the image, its size and the nearest legal sizes.
    """
    if h % multiple == 0 and w % multiple == 0 and h > 0 and w > 0:
        return
    (h_lo, h_hi), (w_lo, w_hi) = nearest_multiples(h, multiple), nearest_multiples(w, multiple)
    raise UnetlabError(
        f"image is {h}x{w} (HxW) but this model needs sides that are multiples of {multiple}; "
        f"nearest are {h_lo}x{w_lo} or {h_hi}x{w_hi}",
        path,
        "crop or resize the training images (e.g. a random or centre crop in the data "
        "settings); prediction pads such images automatically",
    )


def _pad(x: torch.Tensor, pads: Pads, mode: str) -> torch.Tensor:
    """``F.pad`` that falls back from reflect to replicate where a side is too short to mirror
    (reflect needs pad < side)."""
    if not any(pads):
        return x
    if x.dim() == 2:  # F.pad mirrors only batched or channel-first images
        return _pad(x[None], pads, mode)[0]
    h, w = x.shape[-2:]
    if mode == "reflect" and (max(pads[:2]) >= w or max(pads[2:]) >= h):
        mode = "replicate"
    if mode == "constant":
        return F.pad(x, pads)
    return F.pad(x, pads, mode=mode)


def _split(total: int) -> tuple[int, int]:
    """Split a padding amount over both sides, the odd pixel going after (centres the image)."""
    return total // 2, total - total // 2


def pad_to_multiple(
    x: torch.Tensor, multiple: int, mode: str = "reflect"
) -> tuple[torch.Tensor, Pads]:
    """Pad the last two dims of ``x`` (``HxW``, ``CxHxW`` or ``NxCxHxW``) to multiples of
    ``multiple``.

    The image is centred; borders are mirrored (``reflect``, the U-Net paper's choice, so the
    network sees plausible context instead of zeros), falling back to ``replicate`` for sides
    too short to mirror. Returns the padded tensor and the pads for :func:`crop_to`.
    """
    h, w = x.shape[-2:]
    top, bottom = _split(-h % multiple)
    left, right = _split(-w % multiple)
    pads = (left, right, top, bottom)
    return _pad(x, pads, mode), pads


def pad_for_valid(x: torch.Tensor, depth: int, mode: str = "reflect") -> tuple[torch.Tensor, Pads]:
    """Mirror-pad ``x`` so that a valid-padding U-Net's output covers the whole original image.

    Returns the padded input and the pads to remove from the *output* with :func:`crop_to`
    (the output is smaller than the padded input, centred in it).
    """

    def side(size: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """(pads before/after the input, crops before/after the output) of one side."""
        padded = valid_input_size(size, depth)
        out = valid_output_size(padded, depth)
        margin = (padded - out) // 2  # input pixels in front of the first output pixel
        crop_before, crop_after = _split(out - size)
        return (margin + crop_before, padded - size - margin - crop_before), (
            crop_before,
            crop_after,
        )

    (left, right), (crop_left, crop_right) = side(x.shape[-1])  # width first: F.pad order
    (top, bottom), (crop_top, crop_bottom) = side(x.shape[-2])
    padded = _pad(x, (left, right, top, bottom), mode)
    return padded, (crop_left, crop_right, crop_top, crop_bottom)


def crop_to(x: torch.Tensor, pads_or_size: Pads | Sequence[int]) -> torch.Tensor:
    """Undo padding on the last two dims.

    Args:
        x: ``...xHxW`` tensor (e.g. logits of the padded input).
        pads_or_size: the 4 pads returned by :func:`pad_to_multiple` / :func:`pad_for_valid`,
            or a target ``(h, w)`` to centre-crop to.
    """
    h, w = x.shape[-2:]
    if len(pads_or_size) == 4:
        left, right, top, bottom = pads_or_size
    elif len(pads_or_size) == 2:
        th, tw = pads_or_size
        if th > h or tw > w:
            raise ValueError(f"cannot crop {h}x{w} to a larger {th}x{tw}")
        top, bottom = _split(h - th)
        left, right = _split(w - tw)
    else:
        raise ValueError(f"expected 4 pads or an (h, w) size, got {pads_or_size!r}")
    return x[..., top : h - bottom, left : w - right]
