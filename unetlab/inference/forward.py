"""The forward path on torch tensors: logits at the input size for images of any size.

Networks accept only some input sides (``size_multiple`` for same padding; valid-padding U-Nets
also shrink their output). :func:`predict_logits` hides that: an image whose network input
fits in ``tile`` is mirror-padded, run whole and cropped back; a larger one is predicted in
overlapping tiles (:func:`unetlab.inference.tiling.predict_tiled`). Whole or tiled is decided
by :func:`unetlab.inference.grid.needs_tiles`, the rule the numpy path of ``predict`` and the
ONNX Runtime predictor (:class:`unetlab.inference.core.ArrayPredictor`) also use, with the same
mirror indices, tiles and blending; ``tests/test_inference_parity.py`` proves the two equal.
Training validation calls this path; predict, evaluate and bench call the numpy one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from unetlab.artifacts.geometry import model_geometry, unwrap
from unetlab.inference.grid import DEFAULT_TILE, Geometry, mirror_indices, needs_tiles

__all__ = ["forward_padded", "mirror_pad", "model_geometry", "predict_logits", "unwrap"]


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
    tile: int | None = DEFAULT_TILE,
    overlap: float = 0.25,
    tta: bool | str = False,
    tta_space: str = "logits",
    tile_weights: str = "gaussian",
    batch_size: int = 1,
    geometry: Geometry | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Logits ``N x K x H x W`` for normalised images ``N x C x H x W`` of any size.

    The model is used as it is (call ``model.eval()`` first). ``tile``: images whose network
    input exceeds this side are predicted in overlapping tiles of about it (bounded memory;
    :mod:`unetlab.inference.tiling`) blended with ``tile_weights``, as ``predict`` does;
    ``None`` runs each batch whole. ``tta``: ``True``/``"flips"`` averages the
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
    height, width = images.shape[-2:]
    if not needs_tiles(geometry, height, width, tile):
        return forward_padded(network, images, geometry)
    assert tile is not None
    from unetlab.inference.tiling import predict_tiled_tensor

    return predict_tiled_tensor(
        network,
        images,
        geometry=geometry,
        tile=tile,
        overlap=overlap,
        tile_weights=tile_weights,
        batch_size=batch_size,
        progress=progress,
    )
