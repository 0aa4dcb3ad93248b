"""Colour masks to index masks, against hand-built masks; refused colours name their pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unetlab.cli.main import main
from unetlab.data.colors import voc_colormap
from unetlab.data.colour_masks import read_palette, rgb_to_index
from unetlab.data.io import read_mask
from unetlab.data.layouts import dataset_info
from unetlab.errors import UnetlabError

SKY, ROAD, CAR = (128, 128, 128), (128, 64, 128), (64, 0, 128)
LABELS = np.array(
    [
        [0, 0, 0, 0, 0],
        [0, 1, 1, 2, 0],
        [1, 1, 1, 2, 2],
        [1, 1, 1, 1, 1],
    ],
    np.uint8,
)  # drawn by hand; the colour mask below is painted from it


def _paint(labels: np.ndarray, colours: list[tuple[int, int, int]]) -> np.ndarray:
    picture = np.zeros((*labels.shape, 3), np.uint8)
    for index, colour in enumerate(colours):
        picture[labels == index] = colour
    return picture


@pytest.fixture
def palette_file(tmp_path) -> Path:
    path = tmp_path / "classes.txt"
    path.write_text("# CamVid-like\nsky 128 128 128\nroad: 128,64,128\ncar  64 0 128\n")
    return path


def test_colour_masks_become_the_hand_drawn_indices(tmp_path, palette_file):
    colour_dir = tmp_path / "colour"
    colour_dir.mkdir()
    Image.fromarray(_paint(LABELS, [SKY, ROAD, CAR])).save(colour_dir / "a.png")
    flipped = LABELS[::-1].copy()
    rgba = np.dstack([_paint(flipped, [SKY, ROAD, CAR]), np.full(LABELS.shape, 255, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(colour_dir / "b.png")
    palette = read_palette(palette_file)
    assert palette.names == ["sky", "road", "car"]
    report = rgb_to_index(colour_dir, palette, tmp_path / "masks")
    assert [p.name for p in report.written] == ["a.png", "b.png"]
    np.testing.assert_array_equal(read_mask(tmp_path / "masks" / "a.png"), LABELS)
    np.testing.assert_array_equal(read_mask(tmp_path / "masks" / "b.png"), flipped)
    with Image.open(tmp_path / "masks" / "a.png") as written:
        assert written.mode == "P" and written.getpalette()[:9] == [*SKY, *ROAD, *CAR]


def test_a_colour_not_in_the_palette_is_refused_with_its_pixels(tmp_path, palette_file):
    colour_dir = tmp_path / "colour"
    colour_dir.mkdir()
    picture = _paint(LABELS, [SKY, ROAD, CAR])
    picture[2, 3] = picture[3, 4] = (200, 10, 10)  # two stray pixels, first at x=3, y=2
    Image.fromarray(picture).save(colour_dir / "bad.png")
    Image.fromarray(_paint(LABELS, [SKY, ROAD, CAR])).save(colour_dir / "good.png")
    with pytest.raises(UnetlabError) as info:
        rgb_to_index(colour_dir, read_palette(palette_file), tmp_path / "masks")
    message = info.value.message
    assert "1 of 2 mask(s) refused, 1 written" in message
    assert "bad.png: colour(s) not in the palette: (200, 10, 10) at 2 pixel(s), first at x=3, y=2" \
        in message
    assert (tmp_path / "masks" / "good.png").is_file()
    assert not (tmp_path / "masks" / "bad.png").exists()


def test_voc_palette_and_ignore_colour(tmp_path):
    voc = voc_colormap()
    labels = np.array([[0, 1, 15], [255, 15, 1]], np.uint8)
    path = tmp_path / "voc.png"
    Image.fromarray(_paint(labels, voc)).save(path)  # index i painted in VOC colour i
    rgb_to_index(path, read_palette("voc"), tmp_path / "out")
    np.testing.assert_array_equal(read_mask(tmp_path / "out" / "voc.png"), labels)
    # a void colour mapped to 255 with --ignore-color
    painted = _paint(np.array([[0, 1], [2, 2]], np.uint8), [SKY, ROAD, (0, 0, 0)])
    Image.fromarray(painted).save(tmp_path / "void.png")
    palette_file = tmp_path / "p.txt"
    palette_file.write_text("sky 128 128 128\nroad 128 64 128\n")
    rgb_to_index(tmp_path / "void.png", read_palette(palette_file, (0, 0, 0)), tmp_path / "o2")
    np.testing.assert_array_equal(read_mask(tmp_path / "o2" / "void.png"), [[0, 1], [255, 255]])


def test_bad_palettes_and_overwriting_are_refused(tmp_path, palette_file):
    bad = tmp_path / "bad.txt"
    bad.write_text("sky 128 128 128\nroad\n")
    with pytest.raises(UnetlabError, match=r"line 2 \('road'\) is not NAME R G B"):
        read_palette(bad)
    bad.write_text("sky 1 2 3\nroad 1 2 3\n")
    with pytest.raises(UnetlabError, match=r"colour \(1, 2, 3\) is already class 0 \(sky\)"):
        read_palette(bad)
    folder = tmp_path / "colour"
    folder.mkdir()
    Image.fromarray(_paint(LABELS, [SKY, ROAD, CAR])).save(folder / "a.png")
    with pytest.raises(UnetlabError, match="folder of the colour masks"):
        rgb_to_index(folder, read_palette(palette_file), folder)


def test_cli_and_a_colour_classes_txt_names_the_classes(tmp_path, palette_file, capsys):
    root = tmp_path / "data"
    (root / "colour").mkdir(parents=True)
    (root / "images").mkdir()
    Image.fromarray(_paint(LABELS, [SKY, ROAD, CAR])).save(root / "colour" / "a.png")
    Image.fromarray(np.zeros((*LABELS.shape, 3), np.uint8)).save(root / "images" / "a.png")
    (root / "classes.txt").write_text(palette_file.read_text())
    code = main(["data", "rgb-to-index", str(root / "colour"), "--palette",
                 str(root / "classes.txt"), "--out", str(root / "masks")])  # fmt: skip
    assert code == 0 and "classes (3): sky, road, car" in capsys.readouterr().out
    assert dataset_info(root).class_names == ["sky", "road", "car"]  # colours stripped
    assert main(["data", "rgb-to-index", str(root / "colour"), "--palette", "voc", "--out",
                 str(root / "m2"), "--ignore-color", "1,2"]) == 2  # fmt: skip
