"""Overlap-tile prediction: grid coverage, equality with whole-image passes, no seams."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import PoolNet, ValidNet
from torch import nn

from unetlab.inference.forward import forward_padded, predict_logits
from unetlab.inference.grid import Geometry, blend_weights
from unetlab.inference.tiling import Band, TileReader, make_grid, predict_tiled

VALID = Geometry(multiple=1, margin=4, min_output=1)
SAME2 = Geometry(multiple=2, min_output=2)


def numpy_network(model: nn.Module):
    def run(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(batch)).numpy()

    return run


@pytest.mark.parametrize("height,width", [(1, 1), (5, 37), (64, 64), (97, 33), (200, 7)])
@pytest.mark.parametrize(
    "geometry", [SAME2, Geometry(multiple=16, margin=184, out_residue=4, min_output=4)]
)
@pytest.mark.parametrize("tile,overlap", [(32, 0.25), (300, 0.5), (16, 0.0)])
def test_grid_covers_every_pixel(height, width, geometry, tile, overlap) -> None:
    grid = make_grid(height, width, geometry, tile, overlap)
    tile_h, tile_w = grid.tile
    # every tile is an output size the network can produce, aligned to its size multiple
    for side in grid.tile:
        assert geometry.output_size(side) == side
    assert all(y % geometry.multiple == 0 for y in grid.rows)
    assert all(x % geometry.multiple == 0 for x in grid.cols)
    # brute-force coverage count over the padded extent
    covered = np.zeros(grid.extent, int)
    for y, x in grid.origins():
        assert y + tile_h <= grid.extent[0] and x + tile_w <= grid.extent[1]
        covered[y : y + tile_h, x : x + tile_w] += 1
    assert covered[:height, :width].min() >= 1
    assert grid.extent[0] >= height and grid.extent[0] - height < geometry.multiple + tile_h


@pytest.mark.parametrize("mode", ["gaussian", "linear", "constant"])
def test_blend_weights_positive_and_peaked(mode: str) -> None:
    weights = blend_weights((33, 20), mode)
    assert weights.min() > 0
    assert weights.max() == pytest.approx(1.0)
    assert weights[16, 9:11].max() == weights.max()
    if mode == "gaussian":  # sigma = side / 8 along each axis, as in nnU-Net
        assert weights[16, 9] / weights[16, 5] == pytest.approx(
            np.exp(-0.5 * ((9 - 9.5) ** 2 - (5 - 9.5) ** 2) / 2.5**2), rel=1e-5
        )


@pytest.mark.parametrize("size", [(64, 64), (77, 50)])
def test_tiled_equals_whole_image_same_padding(size) -> None:
    model = PoolNet().eval()
    x = torch.randn(1, 3, *size)
    whole = predict_logits(model, x)
    tiled = predict_tiled(
        numpy_network(model),
        TileReader(x[0].numpy(), channels_last=False),
        SAME2,
        tile=32,
        overlap=0.5,
        trim=6,
    )
    np.testing.assert_allclose(tiled, whole[0].numpy(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("size,tile", [((61, 45), 24), ((9, 130), 40), ((1, 1), 16)])
def test_tiled_equals_mirror_padded_whole_image_valid_padding(size, tile) -> None:
    model = ValidNet().eval()
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        whole = forward_padded(model, x, VALID)[0].numpy()
    tiled = predict_tiled(
        numpy_network(model),
        TileReader(x[0].numpy(), channels_last=False),
        VALID,
        tile=tile,
        overlap=0.25,
        batch_size=3,
    )
    np.testing.assert_allclose(tiled, whole, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["same", "valid"])
@pytest.mark.parametrize("blend", ["gaussian", "linear"])
def test_no_seams_on_a_constant_image(kind: str, blend: str) -> None:
    # both stand-ins map a constant image to a constant output when run whole
    if kind == "same":
        model, geometry = PoolNet(padding_mode="reflect"), SAME2
    else:
        model, geometry = ValidNet(), VALID
    image = np.full((90, 70, 3), 0.3, np.float32)
    logits = predict_tiled(
        numpy_network(model.eval()),
        TileReader(image, channels_last=True),
        geometry,
        tile=32,
        overlap=0.25,
        tile_weights=blend,
    )
    spread = logits.max(axis=(1, 2)) - logits.min(axis=(1, 2))
    assert spread.max() < 1e-5


def test_labels_output_equals_argmax_of_logits() -> None:
    model = PoolNet().eval()
    image = np.random.rand(70, 50, 3).astype(np.float32)
    reader = TileReader(image, channels_last=True)
    args = dict(tile=32, overlap=0.25)
    logits = predict_tiled(numpy_network(model), reader, SAME2, **args)
    labels = predict_tiled(numpy_network(model), reader, SAME2, output="labels", **args)
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, logits.argmax(axis=0))


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.8])
def test_labels_for_a_binary_model_use_the_threshold(threshold: float) -> None:
    model = ValidNet(classes=1).eval()
    image = np.random.rand(40, 30, 3).astype(np.float32)
    reader = TileReader(image, channels_last=True)
    logits = predict_tiled(numpy_network(model), reader, VALID, tile=16)
    labels = predict_tiled(
        numpy_network(model), reader, VALID, tile=16, output="labels", threshold=threshold
    )
    probability = 1 / (1 + np.exp(-logits[0].astype(np.float64)))
    np.testing.assert_array_equal(labels, probability > threshold)


def test_uint8_image_is_prepared_tile_by_tile() -> None:
    model = ValidNet().eval()
    image = np.random.randint(0, 256, (50, 41, 3), np.uint8)

    def prepare(tile: np.ndarray) -> np.ndarray:
        assert tile.dtype == np.uint8 and tile.shape[0] <= 24  # never the whole image
        return (tile.transpose(2, 0, 1) / 255.0).astype(np.float32)

    tiled = predict_tiled(
        numpy_network(model),
        TileReader(image, channels_last=True, prepare=prepare),
        VALID,
        tile=24,
    )
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    with torch.no_grad():
        whole = forward_padded(model, x, VALID)[0].numpy()
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_band_buffer_stays_a_few_tiles_high() -> None:
    grid = make_grid(5000, 40, SAME2, tile=64, overlap=0.25)
    origins = list(grid.origins())
    batches = [origins[i : i + 4] for i in range(0, len(origins), 4)]
    band = Band(grid, batches, "labels", 0.5, np.float32)
    assert band.height <= 4 * 48 + 64  # 4 tiles of stride 48 in one column, plus one tile


def test_predict_logits_tile_option_matches_whole_image() -> None:
    model = ValidNet().eval()
    x = torch.randn(2, 3, 37, 29)
    tiled = predict_logits(model, x, tile=16, overlap=0.25, geometry=VALID)
    torch.testing.assert_close(tiled, predict_logits(model, x, geometry=VALID))


def test_trim_without_enough_overlap_is_refused() -> None:
    reader = TileReader(np.zeros((100, 100, 3), np.float32), channels_last=True)
    with pytest.raises(ValueError, match="trim"):
        predict_tiled(numpy_network(PoolNet().eval()), reader, SAME2, tile=32, overlap=0.1, trim=8)


def test_real_valid_unet_tiled_equals_whole_image() -> None:
    from unetlab.models import build_model

    model = build_model("unet", 2, in_channels=1, base=4, depth=2, padding="valid").eval()
    x = torch.randn(1, 1, 70, 53)
    whole = predict_logits(model, x)
    tiled = predict_logits(model, x, tile=64, overlap=0.25, batch_size=8)
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=1e-5)
