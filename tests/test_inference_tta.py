"""Test-time augmentation: each transform undone exactly, averages against hand-made references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from unetlab.inference.forward import predict_logits
from unetlab.inference.tta import apply, invert, transforms, with_tta


def shift_right(x):
    """A network that is not flip-equivariant: each output pixel is its left neighbour."""
    return np.roll(x, 1, axis=-1) if isinstance(x, np.ndarray) else torch.roll(x, 1, dims=-1)


def dihedral_mean(network, x: torch.Tensor, rotations: bool = False) -> torch.Tensor:
    """Reference TTA written out with torch.flip/rot90 (not the tta module): the mean of the
    network's outputs on the 4 flips of ``x`` (with ``rotations``: the 8 symmetries of the
    square), each output turned back."""
    outputs = []
    flips = [(), (-1,)] if rotations else [(), (-1,), (-2,), (-2, -1)]
    for turns in range(4) if rotations else [0]:
        for dims in flips:
            moved = torch.rot90(x.flip(dims) if dims else x, turns, (-2, -1))
            out = torch.rot90(network(moved), -turns, (-2, -1))
            outputs.append(out.flip(dims) if dims else out)
    return torch.stack(outputs).mean(0)


def shifts(x: torch.Tensor, *directions: tuple[int, int]) -> torch.Tensor:
    """Mean of circular shifts of ``x`` by (dy, dx), computed directly with torch.roll."""
    return sum(torch.roll(x, shifts=d, dims=(-2, -1)) for d in directions) / len(directions)


@pytest.mark.parametrize("mode", ["flips", "flips+rot90"])
def test_every_transform_is_undone(mode: str) -> None:
    x = torch.arange(2 * 5 * 7, dtype=torch.float32).view(1, 2, 5, 7)
    seen = set()
    for rotation, flip in transforms(mode):
        moved = apply(x, rotation, flip)
        seen.add(moved.numpy().tobytes())
        torch.testing.assert_close(invert(moved, rotation, flip), x, rtol=0, atol=0)
    assert len(seen) == len(transforms(mode)) == (4 if mode == "flips" else 8)


def test_flips_average_a_shift_with_its_mirror() -> None:
    x = torch.randn(2, 3, 6, 6)
    # mirrored left-right, a right shift is a left shift; up-down flips leave it alone
    expected = shifts(x, (0, 1), (0, -1))
    torch.testing.assert_close(with_tta(shift_right, "flips")(x), expected)


def test_rotations_average_all_four_directions() -> None:
    x = torch.randn(1, 2, 8, 8)
    expected = shifts(x, (0, 1), (0, -1), (1, 0), (-1, 0))
    torch.testing.assert_close(with_tta(shift_right, "flips+rot90")(x), expected)


def test_numpy_and_torch_agree_on_non_square_input() -> None:
    x = torch.randn(1, 2, 5, 9)
    for mode in ("flips", "flips+rot90"):
        from_torch = with_tta(shift_right, mode)(x)
        from_numpy = with_tta(shift_right, mode)(x.numpy())
        np.testing.assert_allclose(from_numpy, from_torch.numpy(), atol=1e-6)
        assert from_torch.shape == x.shape


def test_probability_space_averages_softmax() -> None:
    x = torch.randn(1, 4, 6, 6)
    logits = with_tta(shift_right, "flips", space="probabilities")(x)
    expected = (torch.roll(x, 1, -1).softmax(1) + torch.roll(x, -1, -1).softmax(1)) / 2
    torch.testing.assert_close(logits.softmax(1), expected, atol=1e-6, rtol=1e-5)


def test_probability_space_for_one_channel_averages_sigmoid() -> None:
    x = torch.randn(1, 1, 6, 6)
    logits = with_tta(shift_right, "flips", space="probabilities")(x.numpy())
    expected = (torch.roll(x, 1, -1).sigmoid() + torch.roll(x, -1, -1).sigmoid()) / 2
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), expected.numpy(), atol=1e-6)


def test_equivariant_model_gives_the_plain_prediction() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 2, 1)).eval()
    x = torch.randn(1, 3, 12, 10)
    plain = predict_logits(model, x)
    torch.testing.assert_close(predict_logits(model, x, tta="flips+rot90"), plain)
    probabilities = predict_logits(model, x, tta=True, tta_space="probabilities").softmax(1)
    torch.testing.assert_close(probabilities, plain.softmax(1))


@pytest.mark.parametrize("rotations", [False, True])
def test_predict_logits_tta_equals_the_written_out_reference(rotations: bool) -> None:
    torch.manual_seed(0)
    model = nn.Conv2d(2, 3, 3, padding=1).eval()  # an asymmetric kernel: not flip-equivariant
    x = torch.randn(1, 2, 9, 9)
    with torch.no_grad():
        expected = dihedral_mean(model, x, rotations)
        got = predict_logits(model, x, tta="flips+rot90" if rotations else True)
        assert not torch.allclose(expected, model(x), atol=1e-3)  # TTA changes the result
    torch.testing.assert_close(got, expected)


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="TTA mode"):
        with_tta(shift_right, "rotate-everything")
