"""Converters: splits, labelme, 0/255 fix, TIFF stacks, and the synthetic shapes data."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_dataset
from PIL import Image

from unetlab.data.convert import fix_binary_masks, make_splits, tiff_stack_to_slices
from unetlab.data.io import read_image, read_mask, write_mask
from unetlab.data.labelme import labelme_to_dataset, labelme_to_masks
from unetlab.data.layouts import dataset_info
from unetlab.data.synthetic import make_shapes_dataset
from unetlab.data.validate import check_dataset
from unetlab.errors import UnetlabError


def _plain(root: Path, ids, unlabelled=()) -> Path:
    rng = np.random.default_rng(0)
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for sample_id in [*ids, *unlabelled]:
        Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).save(
            root / "images" / f"{sample_id}.png"
        )
    for sample_id in ids:
        write_mask(root / "masks" / f"{sample_id}.png", np.zeros((4, 4), np.uint8))
    return root


# ---------------------------------------------------------------- splits


def test_make_splits_is_a_seeded_partition_of_labelled_ids(tmp_path):
    ids = [f"im{i:02d}" for i in range(20)]
    root = _plain(tmp_path, ids, unlabelled=["nolabel"])
    splits = make_splits(root, val_fraction=0.25, seed=3)
    assert len(splits["val"]) == 5 and len(splits["train"]) == 15
    assert sorted(splits["train"] + splits["val"]) == ids  # every labelled id exactly once
    assert (root / "splits" / "val.txt").read_text().split() == splits["val"]
    assert dataset_info(root).ids("train") == splits["train"]
    with pytest.raises(UnetlabError, match="--force"):
        make_splits(root, seed=3)
    assert make_splits(root, val_fraction=0.25, seed=3, overwrite=True) == splits  # reproducible
    assert make_splits(root, val_fraction=0.25, seed=4, overwrite=True) != splits


def test_make_splits_voc_writes_imagesets(tmp_path):
    voc = tmp_path / "VOC2007"
    for folder in ("JPEGImages", "SegmentationClass"):
        (voc / folder).mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(voc / "JPEGImages" / f"{i}.jpg")
        write_mask(voc / "SegmentationClass" / f"{i}.png", np.zeros((4, 4), np.uint8))
    splits = make_splits(tmp_path, val_fraction=0.1)
    assert len(splits["val"]) == 1  # at least one held out
    assert (voc / "ImageSets" / "Segmentation" / "train.txt").read_text().split() == splits["train"]


def test_make_splits_refuses_nonsense(tmp_path):
    root = _plain(tmp_path, ["only"])
    with pytest.raises(UnetlabError, match="too few"):
        make_splits(root)
    with pytest.raises(UnetlabError, match=r"\[0, 1\)"):
        make_splits(root, val_fraction=1.5)


# ---------------------------------------------------------------- labelme


def test_labelme_example_equals_the_reference_mask(tmp_path):
    folder = shared_dataset("labelme-example")
    (mask_path,) = labelme_to_masks(folder / "1.json", ["_background_", "cat", "dog"], tmp_path)
    reference = np.asarray(Image.open(folder / "1_reference_mask.png"))  # palette indices
    np.testing.assert_array_equal(read_mask(mask_path), reference)


def _labelme_file(path: Path, shapes, image: np.ndarray, embed: bool) -> Path:
    Image.fromarray(image).save(path.with_suffix(".png"))
    document = {
        "shapes": shapes,
        "imagePath": path.with_suffix(".png").name,
        "imageData": base64.b64encode(path.with_suffix(".png").read_bytes()).decode()
        if embed
        else None,
        "imageHeight": image.shape[0],
        "imageWidth": image.shape[1],
    }
    path.write_text(json.dumps(document))
    return path


def test_labelme_rectangles_circles_and_drawing_order(rng, tmp_path):
    image = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    shapes = [
        {"label": "a", "shape_type": "rectangle", "points": [[30, 25], [5, 4]]},  # corners reversed
        {"label": "b", "shape_type": "circle", "points": [[35, 20], [35, 28]]},  # radius 8
    ]
    source = _labelme_file(tmp_path / "ann.json", shapes, image, embed=True)
    labelme_to_dataset(source, ["bg", "a", "b"], tmp_path / "out")
    mask = read_mask(tmp_path / "out" / "masks" / "ann.png")
    rows, cols = np.mgrid[0:40, 0:50]
    distance = np.hypot(cols - 35, rows - 20)
    in_rectangle = (rows >= 4) & (rows <= 25) & (cols >= 5) & (cols <= 30)
    assert (mask[distance < 7.5] == 2).all()  # the later circle covers the rectangle
    assert (mask[in_rectangle & (distance > 8.5)] == 1).all()
    assert (mask[~in_rectangle & (distance > 8.5)] == 0).all()
    # the embedded image is exported beside the masks, byte-exact pixels
    np.testing.assert_array_equal(read_image(tmp_path / "out" / "images" / "ann.png"), image)
    assert (tmp_path / "out" / "classes.txt").read_text().split() == ["bg", "a", "b"]


def test_labelme_referenced_image_and_bad_labels(rng, tmp_path):
    image = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
    square = {"label": "cat", "shape_type": "polygon", "points": [[1, 1], [8, 1], [8, 8], [1, 8]]}
    source = _labelme_file(tmp_path / "ref.json", [square], image, embed=False)
    labelme_to_masks([source], ["_background_", "cat"], tmp_path / "m", tmp_path / "i")
    np.testing.assert_array_equal(read_image(tmp_path / "i" / "ref.png"), image)
    with pytest.raises(UnetlabError, match="'cat', which is not a class") as caught:
        labelme_to_masks(source, ["_background_", "dog"], tmp_path / "m")
    assert "ref.json" in str(caught.value)
    line = {"label": "cat", "shape_type": "line", "points": [[0, 0], [5, 5]]}
    bad = _labelme_file(tmp_path / "line.json", [line], image, embed=False)
    notes: list[str] = []  # a shape without an area is skipped with a note, not fatal
    (mask_path,) = labelme_to_masks(bad, ["_background_", "cat"], tmp_path / "m", notes=notes)
    assert not read_mask(mask_path).any()
    assert len(notes) == 1 and "line" in notes[0] and "no area" in notes[0]
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(UnetlabError, match="not a readable JSON"):
        labelme_to_masks(tmp_path / "broken.json", ["_background_", "cat"], tmp_path / "m")


# ---------------------------------------------------------------- fix-binary


def test_fix_binary_converts_0_255_and_reports_the_rest(rng, tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    binary = rng.choice(np.array([0, 255], np.uint8), (6, 6))
    Image.fromarray(binary).save(masks / "a.png")
    Image.fromarray(binary // 255).save(masks / "b.png")  # already 0/1
    Image.fromarray(np.where(binary > 0, 128, 0).astype(np.uint8)).save(masks / "c.bmp")
    out = fix_binary_masks(masks, tmp_path / "fixed")
    assert out.converted == [masks / "a.png"] and out.unchanged == [masks / "b.png"]
    assert "two values (0, 128)" in out.skipped[masks / "c.bmp"]
    np.testing.assert_array_equal(read_mask(tmp_path / "fixed" / "a.png"), binary // 255)
    np.testing.assert_array_equal(read_mask(tmp_path / "fixed" / "b.png"), binary // 255)
    assert not (tmp_path / "fixed" / "c.png").exists()
    np.testing.assert_array_equal(np.asarray(Image.open(masks / "a.png")), binary)  # untouched


def test_fix_binary_in_place_makes_the_dataset_pass(tmp_path):
    root = _plain(tmp_path, ["x", "y"])
    (root / "classes.txt").write_text("background\nforeground\n")
    for name in ("x", "y"):
        mask = np.zeros((4, 4), np.uint8)
        mask[1:3] = 255
        Image.fromarray(mask).save(root / "masks" / f"{name}.png")
    with pytest.raises(UnetlabError, match="fix-binary"):
        check_dataset(root)
    assert len(fix_binary_masks(root / "masks").converted) == 2
    report = check_dataset(root)
    assert report.class_pixels["all"].tolist() == [16, 16]


# ---------------------------------------------------------------- TIFF stacks


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_tiff_stack_to_slices_keeps_every_page_exactly(rng, tmp_path, dtype):
    top = np.iinfo(dtype).max
    pages = [rng.integers(0, top, (7, 9), dtype=dtype, endpoint=True) for _ in range(12)]
    images = [Image.fromarray(page) for page in pages]
    images[0].save(tmp_path / "stack.tif", save_all=True, append_images=images[1:])
    written = tiff_stack_to_slices(tmp_path / "stack.tif", tmp_path / "out", prefix="s")
    assert [p.name for p in written] == [f"s{i:02d}.png" for i in range(12)]
    for path, page in zip(written, pages, strict=True):
        read = read_image(path)
        assert read.dtype == dtype
        np.testing.assert_array_equal(read[:, :, 0], page)


def test_tiff_of_floats_is_refused(tmp_path):
    pages = [Image.fromarray(np.full((3, 3), v, np.float32)) for v in (0.5, 1.5)]
    pages[0].save(tmp_path / "f.tif", save_all=True, append_images=pages[1:])
    with pytest.raises(UnetlabError, match="8- or 16-bit"):
        tiff_stack_to_slices(tmp_path / "f.tif", tmp_path / "out")


# ---------------------------------------------------------------- synthetic shapes


def test_shapes_dataset_is_deterministic_and_valid(tmp_path):
    first = make_shapes_dataset(tmp_path / "a", n_train=5, n_val=2, size=48, seed=4)
    second = make_shapes_dataset(tmp_path / "b", n_train=3, n_val=0, size=48, seed=4)
    other = make_shapes_dataset(tmp_path / "c", n_train=3, n_val=0, size=48, seed=5)
    for name in ("shape_0000.png", "shape_0002.png"):
        for folder in ("images", "masks"):
            same = (first / folder / name).read_bytes() == (second / folder / name).read_bytes()
            assert same  # same seed, same sample, whatever the dataset size
        assert (first / "images" / name).read_bytes() != (other / "images" / name).read_bytes()
    report = check_dataset(first)
    assert report.num_classes == 4 and report.class_names[3] == "triangle"
    assert all(report.class_pixels["train"] > 0)
    with pytest.raises(UnetlabError, match="already"):
        make_shapes_dataset(first)


def test_shape_classes_differ_in_colour_and_form(tmp_path):
    import cv2
    from scipy import ndimage

    root = make_shapes_dataset(tmp_path, n_train=40, n_val=0, size=64, seed=0)
    colours: dict[int, list] = {c: [] for c in range(4)}
    fill: dict[int, list] = {c: [] for c in (1, 2, 3)}  # area / area of the enclosing circle
    for i in range(40):
        image = read_image(root / "images" / f"shape_{i:04d}.png").astype(float)
        mask = read_mask(root / "masks" / f"shape_{i:04d}.png")
        for c in range(4):
            if (mask == c).any():
                colours[c].append(image[mask == c].mean(axis=0))
        for c in (1, 2, 3):
            parts, _ = ndimage.label(mask == c)
            for index, box in enumerate(ndimage.find_objects(parts), start=1):
                alone = ndimage.binary_dilation(parts == index) & (mask != c) & (mask != 0)
                inside = box[0].start > 0 and box[1].start > 0
                inside = inside and box[0].stop < 64 and box[1].stop < 64
                if inside and not alone.any():
                    points = np.argwhere(parts == index).astype(np.float32)
                    _, radius = cv2.minEnclosingCircle(points)
                    fill[c].append(len(points) / (np.pi * (radius + 0.5) ** 2))
    means = {c: np.mean(v, axis=0) for c, v in colours.items()}
    for a in range(4):
        for b in range(a + 1, 4):
            assert np.abs(means[a] - means[b]).max() > 60  # clearly different colours
    assert np.argmax(means[1]) == 0 and np.argmax(means[2]) == 1 and np.argmax(means[3]) == 2
    # share of the enclosing circle: disc 1, square 2/pi = 0.64, equilateral triangle 0.41
    assert np.median(fill[1]) > 0.85
    assert 0.55 < np.median(fill[2]) < 0.75
    assert np.median(fill[3]) < 0.5


def test_test_share_and_folds_partition_the_ids_brute_force(tmp_path):
    ids = [f"im{i:02d}" for i in range(23)]
    root = _plain(tmp_path, ids)
    splits = make_splits(root, seed=5, test_fraction=0.2, folds=3)
    test = set(splits["test"])
    rest = set(ids) - test
    assert len(test) == 5  # round(23 * 0.2)
    vals = [set(splits[f"fold{i}_val"]) for i in range(3)]
    assert sorted(len(v) for v in vals) == [6, 6, 6]
    for i, val in enumerate(vals):
        train = set(splits[f"fold{i}_train"])
        assert not train & val and train | val == rest and not (train | val) & test
        for j in range(i + 1, 3):
            assert not val & vals[j]  # folds are disjoint
        assert (root / "splits" / f"fold{i}_val.txt").read_text().split() == sorted(val)
    assert set().union(*vals) == rest
    assert splits["train"] == splits["fold0_train"] and splits["val"] == splits["fold0_val"]
    assert dataset_info(root).ids("test") == sorted(test)
    # seeded: the same seed gives the same lists, another seed other ones
    again = make_splits(root, seed=5, test_fraction=0.2, folds=3, overwrite=True)
    assert again == splits
    other = make_splits(root, seed=6, test_fraction=0.2, folds=3, overwrite=True)
    assert other["test"] != splits["test"]


def test_test_share_without_folds(tmp_path):
    ids = [f"im{i:02d}" for i in range(20)]
    root = _plain(tmp_path, ids)
    splits = make_splits(root, val_fraction=0.1, seed=1, test_fraction=0.25)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [13, 2, 5]
    assert sorted(splits["train"] + splits["val"] + splits["test"]) == ids
    with pytest.raises(UnetlabError, match="--force"):
        make_splits(root, seed=1, test_fraction=0.25)


def test_folds_and_test_refuse_what_cannot_be_split(tmp_path):
    root = _plain(tmp_path, ["a", "b", "c"])
    with pytest.raises(UnetlabError, match="too few for 4 folds"):
        make_splits(root, folds=4)
    with pytest.raises(UnetlabError, match="at least 2"):
        make_splits(root, folds=1)
    with pytest.raises(UnetlabError, match=r"test fraction must be in \[0, 1\)"):
        make_splits(root, test_fraction=1.0)


def test_split_cli_writes_folds_and_notes_older_lists(tmp_path, capsys):
    from unetlab.cli.main import main

    root = _plain(tmp_path, [f"im{i}" for i in range(10)])
    assert main(["data", "split", str(root), "--test", "0.2"]) == 0
    assert main(["data", "split", str(root), "--folds", "2", "--force"]) == 0
    printed = capsys.readouterr().out
    assert "fold1_val.txt: 5 ids" in printed and "left as they were: test" in printed
    assert main(["data", "split", str(root), "--folds", "2"]) == 2  # exists: needs --force
