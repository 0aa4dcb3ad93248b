"""Image and mask readers: every pixel format, every refusal, and round-trip properties."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import shared_dataset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from unetlab.data.colors import voc_colormap
from unetlab.data.io import read_image, read_mask, write_mask
from unetlab.data.problems import BAD_MASK, JPEG_MASK, RGB_MASK, UNREADABLE, DataFileError
from unetlab.errors import UnetlabError


def _save(path: Path, array: np.ndarray, **options) -> Path:
    Image.fromarray(array).save(path, **options)
    return path


# ---------------------------------------------------------------- images


def test_grayscale_image_is_h_w_1(rng, tmp_path):
    pixels = rng.integers(0, 256, (5, 7), dtype=np.uint8)
    image = read_image(_save(tmp_path / "g.png", pixels))
    assert image.shape == (5, 7, 1) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[:, :, 0], pixels)


def test_rgba_image_drops_alpha(rng, tmp_path):
    pixels = rng.integers(0, 256, (4, 6, 4), dtype=np.uint8)
    image = read_image(_save(tmp_path / "a.png", pixels))
    np.testing.assert_array_equal(image, pixels[:, :, :3])


def test_palette_image_becomes_its_colours(rng, tmp_path):
    indices = rng.integers(0, 4, (6, 5), dtype=np.uint8)
    palette = [(10, 20, 30), (200, 0, 0), (0, 200, 0), (5, 5, 250)]
    picture = Image.fromarray(indices, mode="P")
    picture.putpalette([c for colour in palette for c in colour])
    picture.save(tmp_path / "p.png")
    expected = np.array(palette, dtype=np.uint8)[indices]
    np.testing.assert_array_equal(read_image(tmp_path / "p.png"), expected)


def test_16bit_grayscale_and_colour_stay_uint16(rng, tmp_path):
    import cv2

    gray = rng.integers(0, 65536, (5, 6), dtype=np.uint16)
    image = read_image(_save(tmp_path / "g16.png", gray))
    assert image.dtype == np.uint16
    np.testing.assert_array_equal(image[:, :, 0], gray)
    colour = rng.integers(0, 65536, (5, 6, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "c16.png"), colour[:, :, ::-1])  # OpenCV writes BGR
    image = read_image(tmp_path / "c16.png")
    assert image.dtype == np.uint16
    np.testing.assert_array_equal(image, colour)


def test_exif_orientation_is_not_applied(rng, tmp_path):
    pixels = rng.integers(0, 256, (4, 8, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(pixels).save(tmp_path / "e.png", exif=exif)
    np.testing.assert_array_equal(read_image(tmp_path / "e.png"), pixels)


@pytest.mark.parametrize(
    "content, words",
    [
        (b"", "0 bytes"),
        (b"this is not an image\n", "holds text"),
        (None, "truncated"),
    ],
    ids=["zero-byte", "text-named-png", "truncated"],
)
def test_unreadable_images_name_the_file(rng, tmp_path, content, words):
    path = tmp_path / "bad.png"
    if content is None:
        _save(tmp_path / "good.png", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
        content = (tmp_path / "good.png").read_bytes()[:300]
    path.write_bytes(content)
    with pytest.raises(DataFileError) as caught:
        read_image(path)
    assert caught.value.kind == UNREADABLE
    assert str(path) in str(caught.value) and words in str(caught.value)


def test_missing_image_and_multipage_tiff(tmp_path):
    with pytest.raises(UnetlabError, match="not found"):
        read_image(tmp_path / "nope.png")
    pages = [Image.fromarray(np.full((4, 4), v, np.uint8)) for v in (1, 2)]
    pages[0].save(tmp_path / "stack.tif", save_all=True, append_images=pages[1:])
    with pytest.raises(UnetlabError, match="unetlab data tiff"):
        read_image(tmp_path / "stack.tif")


# ---------------------------------------------------------------- masks


def test_palette_mask_is_read_as_indices_not_colours(rng, tmp_path):
    indices = rng.integers(0, 6, (9, 11), dtype=np.uint8)
    indices[0, 0] = 255
    # colours chosen so that converting to L or RGB would give values unlike the indices
    palette = [((250 - 40 * i) % 256, (17 * i) % 256, 200) for i in range(256)]
    mask = Image.fromarray(indices, mode="P")
    mask.putpalette([c for colour in palette for c in colour])
    mask.save(tmp_path / "m.png")
    assert not np.array_equal(np.asarray(mask.convert("L")), indices)
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), indices)


def test_rgb_mask_with_equal_channels_reads_as_gray(rng, tmp_path):
    gray = rng.integers(0, 3, (5, 5), dtype=np.uint8)
    read = read_mask(_save(tmp_path / "m.png", np.repeat(gray[:, :, None], 3, axis=2)))
    np.testing.assert_array_equal(read, gray)


def test_one_bit_mask_is_zero_one(rng, tmp_path):
    bits = rng.integers(0, 2, (6, 8)).astype(bool)
    Image.fromarray(bits).convert("1").save(tmp_path / "b.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "b.png"), bits.astype(np.uint8))


def test_16bit_mask_with_small_values_ok_large_refused(rng, tmp_path):
    small = rng.integers(0, 5, (4, 4), dtype=np.uint16)
    np.testing.assert_array_equal(read_mask(_save(tmp_path / "s.png", small)), small)
    large = small.copy()
    large[0, 0] = 1000
    with pytest.raises(DataFileError) as caught:
        read_mask(_save(tmp_path / "l.png", large))
    assert caught.value.kind == BAD_MASK and "1000" in str(caught.value)


def test_colour_mask_is_refused_with_how_to_convert(tmp_path):
    colours = np.zeros((4, 4, 3), np.uint8)
    colours[:2] = (128, 0, 0)
    with pytest.raises(DataFileError) as caught:
        read_mask(_save(tmp_path / "rgb.png", colours))
    message = str(caught.value)
    assert caught.value.kind == RGB_MASK
    assert str(tmp_path / "rgb.png") in message and "(128,0,0)" in message
    assert "palette" in message


@pytest.mark.parametrize("name", ["m.jpg", "m.png"])  # a JPEG named .png is still a JPEG
def test_jpeg_mask_is_refused_as_lossy(tmp_path, name):
    _save(tmp_path / name, np.zeros((8, 8), np.uint8), format="JPEG")
    with pytest.raises(DataFileError) as caught:
        read_mask(tmp_path / name)
    assert caught.value.kind == JPEG_MASK
    assert name in str(caught.value) and "lossy" in str(caught.value)


def test_write_mask_stores_indices_with_voc_colours(tmp_path):
    mask = np.array([[0, 1], [2, 255]], np.uint8)
    write_mask(tmp_path / "w.png", mask)
    stored = Image.open(tmp_path / "w.png")
    assert stored.mode == "P"
    np.testing.assert_array_equal(np.asarray(stored), mask)
    rgb = np.asarray(stored.convert("RGB"))
    assert tuple(rgb[0, 1]) == (128, 0, 0) and tuple(rgb[1, 1]) == (224, 224, 192)  # VOC colours


def test_voc_colormap_matches_published_values():
    colours = voc_colormap()
    # PASCAL VOC 2012 devkit: background, aeroplane, bicycle, bird, ..., person (15)
    assert colours[:4] == [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0)]
    assert colours[15] == (192, 128, 128)


# ---------------------------------------------------------------- real data


def test_isbi2012_reads_as_grayscale_with_two_classes():
    root = shared_dataset("isbi2012")
    image = read_image(root / "images" / "00.png")
    mask = read_mask(root / "masks" / "00.png")
    assert image.shape == (512, 512, 1) and image.dtype == np.uint8
    assert mask.shape == (512, 512) and set(np.unique(mask)) == {0, 1}


def test_camvid_palette_masks_give_indices_whose_colours_are_the_palette():
    root = shared_dataset("camvid") / "VOC2007"
    path = sorted((root / "SegmentationClass").glob("*.png"))[0]
    mask = read_mask(path)
    assert set(np.unique(mask)) <= set(range(11)) | {255}
    rgb = np.asarray(Image.open(path).convert("RGB"))
    colours = np.array(voc_colormap(), np.uint8)
    np.testing.assert_array_equal(colours[mask], rgb)  # the README: VOC colour map


# ---------------------------------------------------------------- properties

_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
_shapes = st.tuples(st.integers(1, 24), st.integers(1, 24))


@_SETTINGS
@given(mask=arrays(np.uint8, _shapes), palette=st.lists(st.tuples(*[st.integers(0, 255)] * 3)))
def test_written_masks_read_back_exactly(tmp_path, mask, palette):
    write_mask(tmp_path / "m.png", mask, palette[:256])
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), mask)


@_SETTINGS
@given(
    mask=arrays(np.uint8, _shapes),
    palette=arrays(np.uint8, (768,)),
    mode=st.sampled_from(["P", "L"]),
)
def test_index_pngs_from_pillow_read_back_exactly(tmp_path, mask, palette, mode):
    image = Image.fromarray(mask, mode=mode)
    if mode == "P":
        image.putpalette(palette.tolist())
    image.save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), mask)


@_SETTINGS
@given(
    image=st.one_of(
        arrays(np.uint8, st.tuples(st.integers(1, 20), st.integers(1, 20), st.just(3))),
        arrays(np.uint8, _shapes),
        arrays(np.uint16, _shapes),
    ),
    ending=st.sampled_from([".png", ".tif", ".bmp"]),
)
def test_lossless_images_read_back_exactly(tmp_path, image, ending):
    if ending == ".bmp" and image.dtype == np.uint16:
        ending = ".png"  # BMP has no 16-bit grayscale
    Image.fromarray(image).save(tmp_path / f"i{ending}")
    read = read_image(tmp_path / f"i{ending}")
    np.testing.assert_array_equal(read, image if image.ndim == 3 else image[:, :, None])
    assert read.dtype == image.dtype
