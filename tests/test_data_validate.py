"""check_dataset: every bad-input case gives one clear problem naming the file, and the
training-time reader raises the same error; the statistics match independent counts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_dataset
from PIL import Image

from unetlab.data import problems as kinds
from unetlab.data.datasets import open_dataset
from unetlab.data.problems import DataFileError
from unetlab.data.synthetic import make_shapes_dataset
from unetlab.data.validate import check_dataset, format_report
from unetlab.errors import UnetlabError


@pytest.fixture
def root(tmp_path) -> Path:
    return make_shapes_dataset(tmp_path / "ds", n_train=4, n_val=2, size=24, seed=1)


def _mask(root: Path, i: int) -> Path:
    return root / "masks" / f"shape_{i:04d}.png"


def _image(root: Path, i: int) -> Path:
    return root / "images" / f"shape_{i:04d}.png"


def size_mismatch(root):
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(_mask(root, 1))
    return _mask(root, 1), "20 (w x h)"


def values_out_of_range(root):
    mask = np.zeros((24, 24), np.uint8)
    mask[:3], mask[5:8], mask[10] = 1, 7, 9
    Image.fromarray(mask).save(_mask(root, 2))
    return _mask(root, 2), "values 7, 9"


def rgb_mask(root):
    colours = np.zeros((24, 24, 3), np.uint8)
    colours[4:9] = (0, 128, 0)
    Image.fromarray(colours).save(_mask(root, 0))
    return _mask(root, 0), "colour mask"


def jpeg_mask(root):
    _mask(root, 3).unlink()
    Image.fromarray(np.zeros((24, 24), np.uint8)).save(root / "masks" / "shape_0003.jpg")
    return root / "masks" / "shape_0003.jpg", "lossy"


def truncated_image(root):
    data = _image(root, 3).read_bytes()
    _image(root, 3).write_bytes(data[: len(data) // 2])
    return _image(root, 3), "truncated"


def zero_byte_image(root):
    _image(root, 0).write_bytes(b"")
    return _image(root, 0), "0 bytes"


def text_named_png(root):
    _image(root, 4).write_text("id,label\n1,cat\n")
    return _image(root, 4), "holds text"


def missing_split_id(root):
    with open(root / "splits" / "train.txt", "a") as handle:
        handle.write("ghost\n")
    return root / "splits" / "train.txt", "ghost"


def missing_mask(root):
    _mask(root, 5).unlink()
    return root / "splits" / "val.txt", "no mask"


def empty_split(root):
    (root / "splits" / "val.txt").write_text("\n")
    return root / "splits" / "val.txt", "lists no ids"


def channel_mismatch(root):
    Image.open(_image(root, 2)).convert("L").save(_image(root, 2))
    return root / "images", "shape_0002.png"


def duplicate_id(root):
    Image.open(_image(root, 1)).save(root / "images" / "shape_0001.jpg")
    return root / "images", "shape_0001.png, shape_0001.jpg"


def binary_mask_among_index_masks(root):
    """A 0/255 mask among the 0/1 masks of a two-class dataset (in a multi-class dataset a 0/255
    mask is an object-less mask with an ignore band: unetlab.data.binary)."""
    (root / "classes.txt").write_text("background\nshape\n")
    for path in sorted((root / "masks").glob("*.png")):
        Image.fromarray((np.asarray(Image.open(path)) > 0).astype(np.uint8)).save(path)
    mask = np.where(np.asarray(Image.open(_mask(root, 1))) > 0, 255, 0).astype(np.uint8)
    mask[0, 0] = 255
    Image.fromarray(mask).save(_mask(root, 1))
    return _mask(root, 1), "fix-binary"


CASES: dict[str, tuple[Callable, str, bool]] = {
    # name: (mutation, problem kind, the training reader meets it too)
    "size mismatch": (size_mismatch, kinds.SIZE_MISMATCH, True),
    "values beyond num_classes": (values_out_of_range, kinds.VALUES, True),
    "RGB mask": (rgb_mask, kinds.RGB_MASK, True),
    "JPEG mask": (jpeg_mask, kinds.JPEG_MASK, True),
    "truncated image": (truncated_image, kinds.UNREADABLE, True),
    "zero-byte image": (zero_byte_image, kinds.UNREADABLE, True),
    "text file named .png": (text_named_png, kinds.UNREADABLE, True),
    "missing split id": (missing_split_id, kinds.MISSING, True),
    "id without mask": (missing_mask, kinds.MISSING, True),
    "empty split": (empty_split, kinds.EMPTY_SPLIT, True),
    "channel counts differ": (channel_mismatch, kinds.CHANNELS, False),
    "two files for one id": (duplicate_id, kinds.DUPLICATE, True),
    "0/255 mask among index masks": (binary_mask_among_index_masks, kinds.BINARY_0_255, False),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_clear_problem_naming_the_file(root, case):
    mutate, kind, reader_sees_it = CASES[case]
    path, words = mutate(root)
    report = check_dataset(root, raise_on_problems=False)
    assert [p.kind for p in report.problems] == [kind]
    problem = report.problems[0]
    assert problem.path == str(path) and words in problem.message + (problem.hint or "")
    assert problem.hint  # says what to do
    with pytest.raises(DataFileError) as caught:  # one problem: its own error, same words
        check_dataset(root)
    assert caught.value.kind == kind and str(path) in str(caught.value)
    if reader_sees_it:
        with pytest.raises(DataFileError) as at_training:
            for split in ("train", "val"):
                dataset = open_dataset(root, split)
                for index in range(len(dataset)):
                    dataset[index]
        assert at_training.value.kind == kind and str(path) in str(at_training.value)


def test_all_problems_are_reported_at_once(root):
    for mutate in (size_mismatch, rgb_mask, zero_byte_image, empty_split):
        mutate(root)
    with pytest.raises(UnetlabError) as caught:
        check_dataset(root)
    text = str(caught.value)
    assert "4 problems" in text
    for name in ("shape_0001.png", "shape_0000.png", "val.txt"):
        assert name in text


def test_0_255_dataset_gets_one_message_with_the_fix(root):
    for i in range(6):
        mask = np.asarray(Image.open(_mask(root, i)))
        Image.fromarray(np.where(mask > 0, 255, 0).astype(np.uint8)).save(_mask(root, i))
    (root / "classes.txt").write_text("background\nforeground\n")
    with pytest.raises(DataFileError) as caught:
        check_dataset(root)
    assert caught.value.kind == kinds.BINARY_0_255
    assert f"unetlab data fix-binary {root / 'masks'}" in str(caught.value)


def test_size_mismatch_from_exif_rotation_says_so(root):
    image = np.asarray(Image.open(_image(root, 0)))[:, :20]  # 24 high, 20 wide
    exif = Image.Exif()
    exif[0x0112] = 6  # a phone photo "to be rotated 90 degrees for display"
    Image.fromarray(image).save(_image(root, 0), exif=exif)
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(_mask(root, 0))  # drawn on the rotated view
    with pytest.raises(DataFileError, match="EXIF rotation tag"):
        check_dataset(root)


def test_classes_txt_disagreeing_with_num_classes(root):
    with pytest.raises(DataFileError, match=r"classes\.txt names 4 classes but num_classes is 6"):
        check_dataset(root, num_classes=6)


def test_empty_folders(tmp_path):
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    with pytest.raises(DataFileError) as caught:
        check_dataset(tmp_path)
    assert caught.value.kind == kinds.EMPTY_SPLIT and str(tmp_path / "images") in str(caught.value)


def test_statistics_match_independent_counts(root):
    (root / "classes.txt").unlink()  # num_classes then comes from the masks
    report = check_dataset(root)
    assert report.num_classes == 4 and report.num_classes_source == "masks"
    for split, ids in (("train", range(4)), ("val", range(4, 6))):
        values = np.concatenate([np.asarray(Image.open(_mask(root, i))).ravel() for i in ids])
        np.testing.assert_array_equal(report.class_pixels[split], np.bincount(values, minlength=4))
        assert report.image_sizes[split] == {(24, 24): len(ids)}
    assert report.channels == {3: 6} and report.in_channels == 3
    assert "3 triangle" not in format_report(report)  # no names without classes.txt
    assert "3 class_3" in format_report(report)


def test_without_split_files_everything_is_checked(root):
    for path in (root / "splits").iterdir():
        path.unlink()
    report = check_dataset(root)
    assert list(report.splits) == ["all"] and len(report.splits["all"]) == 6
    assert any("unetlab data split" in warning for warning in report.warnings)


def test_isbi2012_frequencies_equal_its_readme():
    report = check_dataset(shared_dataset("isbi2012"))
    # README verification table: train 77.11% / 22.89%, val 79.19% / 20.81%
    np.testing.assert_allclose(report.class_frequencies("train"), [0.7711, 0.2289], atol=5e-5)
    np.testing.assert_allclose(report.class_frequencies("val"), [0.7919, 0.2081], atol=5e-5)
    assert report.in_channels == 1


def test_camvid_checks_clean_with_ignore_pixels():
    report = check_dataset(shared_dataset("camvid"))
    assert report.ok and report.num_classes == 11
    assert {s: len(ids) for s, ids in report.splits.items()} == {"train": 367, "val": 101}
    assert report.ignored_pixels["train"] > 0 and report.image_sizes["val"] == {(480, 360): 101}
