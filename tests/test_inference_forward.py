"""predict_logits: any input size, same and valid padding, against numpy-padded references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import PoolNet, ValidNet
from torch import nn

from unetlab.inference.forward import forward_padded, mirror_pad, model_geometry, predict_logits
from unetlab.inference.grid import Geometry, mirror_indices

VALID_GEOMETRY = Geometry(multiple=1, margin=4, min_output=1)


def numpy_reflect(x: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
    """np.pad per axis: reflect, or edge for a 1-pixel side (which cannot be reflected)."""
    padded = x.numpy()
    for axis, amounts in ((2, pads[:2]), (3, pads[2:])):
        widths = [(0, 0)] * 4
        widths[axis] = amounts
        mode = "edge" if padded.shape[axis] == 1 else "reflect"
        padded = np.pad(padded, widths, mode=mode)
    return torch.from_numpy(padded)


@pytest.mark.parametrize("length", [1, 2, 3, 7, 16])
@pytest.mark.parametrize("before,after", [(0, 0), (2, 5), (9, 30)])
def test_mirror_indices_match_numpy_pad(length: int, before: int, after: int) -> None:
    mode = "edge" if length == 1 else "reflect"
    expected = np.pad(np.arange(length), (before, after), mode=mode)
    np.testing.assert_array_equal(mirror_indices(-before, length + after, length), expected)


def test_mirror_pad_any_amount() -> None:
    x = torch.arange(2 * 3 * 5, dtype=torch.float32).view(1, 2, 3, 5)
    padded = mirror_pad(x, (-4, 3 + 7), (-1, 5 + 12))
    torch.testing.assert_close(padded, numpy_reflect(x, (4, 7, 1, 12)))


@pytest.mark.parametrize("size", [(8, 8), (7, 9), (1, 1), (1, 5)])
def test_same_padding_any_size_matches_reflect_padded_reference(size: tuple[int, int]) -> None:
    model = PoolNet().eval()
    x = torch.randn(2, 3, *size)
    logits = predict_logits(model, x)
    h, w = size
    reference = model(numpy_reflect(x, (0, h % 2, 0, w % 2)))[..., :h, :w]
    assert logits.shape == (2, 3, h, w)
    torch.testing.assert_close(logits, reference)


def test_aligned_input_is_a_plain_forward() -> None:
    model = PoolNet().eval()
    x = torch.randn(1, 3, 12, 6)
    torch.testing.assert_close(predict_logits(model, x), model(x))


@pytest.mark.parametrize("size", [(10, 13), (3, 3), (1, 2)])
def test_valid_padding_output_covers_the_input(size: tuple[int, int]) -> None:
    model = ValidNet().eval()
    x = torch.randn(1, 3, *size)
    logits = predict_logits(model, x, geometry=VALID_GEOMETRY)
    assert logits.shape[-2:] == size
    torch.testing.assert_close(logits, model(numpy_reflect(x, (2, 2, 2, 2))))


def test_wrong_geometry_is_reported() -> None:
    with pytest.raises(RuntimeError, match="expected"):
        forward_padded(ValidNet().eval(), torch.randn(1, 3, 8, 8), Geometry())


def test_predict_logits_needs_gradients_off() -> None:
    logits = predict_logits(PoolNet(), torch.randn(1, 3, 4, 4, requires_grad=True))
    assert not logits.requires_grad


@pytest.mark.parametrize(
    "geometry,needed,expected",
    [
        (Geometry(multiple=16, min_output=16), 1, 16),
        (Geometry(multiple=16, min_output=16), 33, 48),
        # classic valid U-Net, depth 4: 572 -> 388 (Ronneberger et al., Fig. 1)
        (Geometry(multiple=16, margin=184, out_residue=4, min_output=4), 380, 388),
    ],
)
def test_geometry_output_sizes(geometry: Geometry, needed: int, expected: int) -> None:
    assert geometry.output_size(needed) == expected
    assert geometry.output_size_within(geometry.input_size(expected)) == expected


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_real_unet_geometry_and_any_size(padding: str) -> None:
    from unetlab.models import build_model, valid_input_size, valid_output_size

    model = build_model("unet", 3, in_channels=1, base=4, depth=2, padding=padding).eval()
    geometry = model_geometry(model)
    if padding == "valid":  # the paper's arithmetic, through the models' own functions
        size = valid_input_size(30, 2)
        assert geometry.input_size(geometry.output_size(30)) == size
        assert geometry.output_size(30) == valid_output_size(size, 2)
    else:
        assert geometry == Geometry(multiple=4, min_output=4)
    # 44 x 43: the models' centred padding then puts the image at the same pooling phase
    x = torch.randn(1, 1, 44, 43)
    logits = predict_logits(model, x)
    assert logits.shape == (1, 3, 44, 43)
    if padding == "valid":  # reference: the models' own mirror padding for valid U-Nets
        from unetlab.models import crop_to, pad_for_valid

        padded, pads = pad_for_valid(x, 2)
        reference = crop_to(model(padded), pads)
    else:
        reference = model(numpy_reflect(x, (0, 0, 0, 1)))[..., :44, :43]
    torch.testing.assert_close(logits, reference, atol=1e-5, rtol=1e-5)


def test_geometry_seen_through_wrappers() -> None:
    model = PoolNet()
    wrapped = nn.DataParallel(model)  # DDP and torch.compile wrap the same way (.module/_orig_mod)
    assert model_geometry(wrapped) == model_geometry(model) == Geometry(multiple=2, min_output=2)
    assert predict_logits(wrapped.eval(), torch.randn(1, 3, 5, 5)).shape == (1, 3, 5, 5)
