"""Run a segmentation network on images of any size and get logits at the input size.

Networks accept only some input sides (``size_multiple`` for same padding; valid-padding U-Nets
also shrink their output). :func:`predict_logits` hides that: it mirror-pads the input so the
network's output covers every pixel, then crops the logits back to the input size. Training
validation, ``evaluate`` and ``predict`` all call it, so they see the same borders.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from unetlab.inference.grid import Geometry, mirror_indices


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside DDP/DataParallel (``.module``) or ``torch.compile`` wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def model_geometry(model: nn.Module) -> Geometry:
    """The input/output size arithmetic of a unetlab model.

    Same padding: input sides must be multiples of ``model.size_multiple``, output = input.
    Valid padding (``model.padding == "valid"``): the margin comes from
    :mod:`unetlab.models.padding` for the model's ``depth``. A module that carries its own
    ``geometry`` (an exported graph, :class:`unetlab.export.onnx_module.OnnxModule`) gives it.
    """
    model = unwrap(model)
    stored = getattr(model, "geometry", None)
    if isinstance(stored, Geometry):
        return stored
    multiple = int(getattr(model, "size_multiple", 1))
    if getattr(model, "padding", "same") != "valid":
        return Geometry(multiple=multiple, min_output=multiple)
    from unetlab.models.padding import valid_input_size, valid_output_size

    depth = int(model.depth)
    smallest_input = int(valid_input_size(1, depth))
    smallest_output = int(valid_output_size(smallest_input, depth))
    return Geometry(
        multiple=multiple,
        margin=smallest_input - smallest_output,
        out_residue=smallest_output % multiple,
        min_output=smallest_output,
    )


def mirror_pad(images: torch.Tensor, rows: tuple[int, int], cols: tuple[int, int]) -> torch.Tensor:
    """Crop/extend ``images`` (``... x H x W``) to rows ``[r0, r1)`` and columns ``[c0, c1)``.

    Positions outside the image are mirrored (reflect; replicate for a 1-pixel side) any number
    of times, so tiny images and large margins work where ``F.pad(mode="reflect")`` would fail.
    """
    height, width = images.shape[-2:]
    if rows == (0, height) and cols == (0, width):
        return images
    row_index = torch.from_numpy(mirror_indices(*rows, height)).to(images.device)
    col_index = torch.from_numpy(mirror_indices(*cols, width)).to(images.device)
    return images.index_select(-2, row_index).index_select(-1, col_index)


Network = Callable[[torch.Tensor], torch.Tensor]


def forward_padded(network: Network, images: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """One forward pass over whole images: pad for the network, run it, crop to ``H x W``."""
    height, width = images.shape[-2:]
    out_h, out_w = geometry.output_size(height), geometry.output_size(width)
    start = -geometry.offset
    padded = mirror_pad(
        images,
        (start, start + geometry.input_size(out_h)),
        (start, start + geometry.input_size(out_w)),
    )
    logits = network(padded)
    if tuple(logits.shape[-2:]) != (out_h, out_w):
        raise RuntimeError(
            f"the network returned {tuple(logits.shape[-2:])} for input {tuple(padded.shape[-2:])}"
            f", expected {(out_h, out_w)} from its geometry {geometry}"
        )
    return logits[..., :height, :width]


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    *,
    tile: int | None = None,
    overlap: float = 0.25,
    tta: bool | str = False,
    tta_space: str = "logits",
    blend: str = "gaussian",
    batch_size: int = 1,
    geometry: Geometry | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Logits ``N x K x H x W`` for normalised images ``N x C x H x W`` of any size.

    The model is used as it is (call ``model.eval()`` first). ``tile``: predict in overlapping
    tiles of this input side (bounded memory; see :mod:`unetlab.inference.tiling`) blended with
    ``blend`` weights; ``None`` runs each batch whole. ``tta``: ``True``/``"flips"`` averages the
    flips, ``"flips+rot90"`` adds the 90-degree rotations, in ``tta_space`` ("logits" or
    "probabilities"; averaged probabilities come back as their logarithm).
    """
    if images.ndim != 4:
        raise ValueError(f"expected N x C x H x W images, got shape {tuple(images.shape)}")
    geometry = geometry or model_geometry(model)
    network: Network = model
    if tta:
        from unetlab.inference.tta import with_tta

        network = with_tta(model, tta, space=tta_space)
    if tile is None:
        return forward_padded(network, images, geometry)
    from unetlab.inference.tiling import predict_tiled_tensor

    return predict_tiled_tensor(
        network,
        images,
        geometry=geometry,
        tile=tile,
        overlap=overlap,
        blend=blend,
        batch_size=batch_size,
        progress=progress,
    )
