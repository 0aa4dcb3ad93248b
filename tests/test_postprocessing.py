"""Post-processing of label maps: hand-built maps with known regions, a pixel-by-pixel
brute-force reference (breadth-first flood fills) on random maps, scikit-image's component
labelling, and the one inference path: predict, evaluate, serve and export apply the same
post-processing, stored with the run."""

from __future__ import annotations

import json
from collections import Counter, deque

import numpy as np
import pytest

from unetlab.cli.main import main
from unetlab.errors import UnetlabError
from unetlab.inference.postprocessing import (
    PostProcessing,
    fill_holes,
    from_flags,
    keep_largest_region,
    remove_small_regions,
)

from test_evaluate import brute_force_confusion, oracle_checkpoint, write_dataset  # isort: skip

# ---------------------------------------------------------------- hand-built maps


def test_small_regions_take_the_label_around_them() -> None:
    labels = np.array(
        [
            [0, 0, 0, 0, 0, 0],
            [0, 1, 1, 1, 0, 0],
            [0, 1, 2, 1, 0, 1],  # a class-2 speck inside the object; a class-1 speck outside
            [0, 1, 1, 1, 0, 0],
            [0, 0, 0, 0, 1, 0],  # touches the object diagonally only: a region of its own
        ],
        np.uint8,
    )
    expected = np.array(
        [
            [0, 0, 0, 0, 0, 0],
            [0, 1, 1, 1, 0, 0],
            [0, 1, 1, 1, 0, 0],
            [0, 1, 1, 1, 0, 0],
            [0, 0, 0, 0, 0, 0],
        ]
    )
    out = remove_small_regions(labels, 2)
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(remove_small_regions(labels, 1), labels)  # nothing below 1


def test_the_longest_shared_border_wins_and_ties_go_to_the_lower_class() -> None:
    # the class-1 pair shares 4 pixel edges with class 2 and 2 with the background
    longest = np.array([[0, 0, 0, 0], [2, 1, 1, 2], [2, 2, 2, 2], [0, 0, 0, 0]])
    np.testing.assert_array_equal(
        remove_small_regions(longest, 3), [[0, 0, 0, 0], [2, 2, 2, 2], [2, 2, 2, 2], [0, 0, 0, 0]]
    )
    tie = np.array([[0, 0, 0], [0, 1, 2], [2, 2, 2]])  # 2 edges to 0, 2 edges to 2
    np.testing.assert_array_equal(
        remove_small_regions(tie, 2), [[0, 0, 0], [0, 0, 2], [2, 2, 2]]
    )
    # every region is removed at once: none has a neighbour that stays -> background
    np.testing.assert_array_equal(remove_small_regions(np.array([[1, 2], [2, 1]]), 2), 0)


def test_keep_largest_removes_the_other_regions_of_that_class_only() -> None:
    labels = np.array(
        [
            [1, 1, 1, 0, 0],
            [1, 1, 0, 0, 1],
            [0, 0, 0, 1, 1],
            [2, 0, 0, 1, 1],
        ]
    )
    # two regions of 5 pixels: the first in row order stays
    np.testing.assert_array_equal(
        keep_largest_region(labels, 1),
        [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [0, 0, 0, 0, 0], [2, 0, 0, 0, 0]],
    )
    bigger = labels.copy()
    bigger[0, 4] = 1  # now the right one (6 pixels) is the largest
    np.testing.assert_array_equal(
        keep_largest_region(bigger, 1),
        [[0, 0, 0, 0, 1], [0, 0, 0, 0, 1], [0, 0, 0, 1, 1], [2, 0, 0, 1, 1]],
    )
    inside = np.array([[1, 1, 1, 2, 2], [1, 1, 1, 2, 2], [0, 0, 0, 2, 1], [0, 0, 0, 2, 2]])
    expected = inside.copy()
    expected[2, 4] = 2  # a stray class-1 pixel inside class 2 becomes class 2
    np.testing.assert_array_equal(keep_largest_region(inside, 1), expected)
    np.testing.assert_array_equal(keep_largest_region(inside, 2), inside)  # one region already


def test_fill_holes_fills_enclosed_background_only() -> None:
    labels = np.array(
        [
            [0, 0, 0, 0, 0, 0, 0],
            [0, 1, 1, 1, 1, 1, 0],
            [0, 1, 0, 0, 0, 1, 0],
            [0, 1, 0, 2, 0, 1, 0],  # the class-2 island in the hole stays
            [0, 1, 1, 1, 1, 1, 0],
            [0, 0, 0, 0, 0, 0, 0],
            [1, 1, 1, 0, 0, 0, 0],
            [1, 0, 1, 0, 0, 0, 0],  # open to the image border: not a hole
        ]
    )
    expected = labels.copy()
    expected[2, 2:5] = 1
    expected[3, [2, 4]] = 1
    np.testing.assert_array_equal(fill_holes(labels, 1), expected)
    # background enclosed by two classes together is a hole of neither
    shared = np.array([[1, 1, 2, 2], [1, 0, 0, 2], [1, 1, 2, 2]])
    np.testing.assert_array_equal(fill_holes(shared, 1), shared)
    np.testing.assert_array_equal(fill_holes(shared, 2), shared)


def test_steps_run_in_order_and_class_lists_resolve() -> None:
    labels = np.array(
        [
            [1, 1, 1, 1, 0, 0],
            [1, 0, 0, 1, 0, 1],  # a 1-pixel class-1 region: removed by min_size first
            [1, 1, 1, 1, 0, 0],
            [0, 0, 0, 0, 0, 0],
            [0, 1, 1, 0, 2, 2],  # a second class-1 region (2 px): removed by keep_largest
        ]
    )
    steps = PostProcessing(min_size=2, keep_largest="cell", fill_holes="all")
    resolved = steps.for_classes(["background", "cell", "other"])
    assert (resolved.keep_largest, resolved.fill_holes) == ((1,), (1, 2))
    expected = np.array(
        [
            [1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 2, 2],
        ]
    )
    np.testing.assert_array_equal(resolved.apply(labels), expected)
    assert resolved.describe(["background", "cell", "other"]) == (
        "regions < 2 px removed; largest region kept: cell; holes filled: cell, other"
    )
    assert PostProcessing().apply(labels) is labels  # nothing to do: no copy
    assert PostProcessing.from_dict(resolved.to_dict()) == resolved


def test_bad_settings_are_named() -> None:
    names = ["background", "cell"]
    with pytest.raises(UnetlabError, match="no class named 'nucleus'"):
        PostProcessing(keep_largest="nucleus").for_classes(names)
    with pytest.raises(UnetlabError, match="class 5 does not exist"):
        PostProcessing(fill_holes=[5]).for_classes(names)
    with pytest.raises(UnetlabError, match=r"background \(class 0\) has no holes"):
        PostProcessing(fill_holes="0").for_classes(names)
    with pytest.raises(UnetlabError, match="min_size -1 is negative"):
        PostProcessing(min_size=-1)
    with pytest.raises(UnetlabError, match=r"unknown post-processing step.*min_pixels"):
        PostProcessing.from_dict({"min_pixels": 3})
    with pytest.raises(UnetlabError, match="cannot be combined"):
        from_flags(min_size=3, no_postprocessing=True)
    assert from_flags() is None  # nothing asked: the stored post-processing applies
    assert from_flags(no_postprocessing=True) == PostProcessing()
    assert from_flags(fill_holes=True) == PostProcessing(fill_holes="all")


# ---------------------------------------------------------------- brute force, random maps


NEIGHBOURS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def flood_regions(mask: np.ndarray) -> list[list[tuple[int, int]]]:
    """4-connected regions of ``mask``, pixel by pixel, in row order of their first pixel."""
    seen = np.zeros(mask.shape, bool)
    regions = []
    for start in zip(*np.nonzero(mask), strict=True):
        if seen[start]:
            continue
        seen[start] = True
        queue, region = deque([start]), []
        while queue:
            r, c = queue.popleft()
            region.append((r, c))
            for dr, dc in NEIGHBOURS:
                q = (r + dr, c + dc)
                inside = 0 <= q[0] < mask.shape[0] and 0 <= q[1] < mask.shape[1]
                if inside and mask[q] and not seen[q]:
                    seen[q] = True
                    queue.append(q)
        regions.append(region)
    return regions


def reference_relabel(labels: np.ndarray, removed: list[list[tuple[int, int]]]) -> np.ndarray:
    gone = {p for region in removed for p in region}
    out = labels.copy()
    for region in removed:
        votes: Counter[int] = Counter()
        for r, c in region:
            for dr, dc in NEIGHBOURS:
                q = (r + dr, c + dc)
                inside = 0 <= q[0] < labels.shape[0] and 0 <= q[1] < labels.shape[1]
                if inside and q not in gone:
                    votes[int(labels[q])] += 1
        most = max(votes.values(), default=0)
        choice = min((k for k, v in votes.items() if v == most), default=0)
        for p in region:
            out[p] = choice
    return out


def reference_remove_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    small = [
        region
        for label in np.unique(labels)
        for region in flood_regions(labels == label)
        if len(region) < min_size
    ]
    return reference_relabel(labels, small)


def reference_keep_largest(labels: np.ndarray, label: int) -> np.ndarray:
    regions = flood_regions(labels == label)
    if len(regions) < 2:
        return labels.copy()
    largest = max(regions, key=len)  # the first of the largest
    return reference_relabel(labels, [r for r in regions if r is not largest])


def reference_fill_holes(labels: np.ndarray, label: int) -> np.ndarray:
    """Flood from the border through pixels of other classes; background left unreached is a
    hole of ``label``."""
    h, w = labels.shape
    reached = np.zeros(labels.shape, bool)
    queue = deque(
        (r, c) for r in range(h) for c in range(w)
        if (r in (0, h - 1) or c in (0, w - 1)) and labels[r, c] != label
    )  # fmt: skip
    for p in queue:
        reached[p] = True
    while queue:
        r, c = queue.popleft()
        for dr, dc in NEIGHBOURS:
            q = (r + dr, c + dc)
            if 0 <= q[0] < h and 0 <= q[1] < w and not reached[q] and labels[q] != label:
                reached[q] = True
                queue.append(q)
    out = labels.copy()
    out[(labels == 0) & ~reached] = label
    return out


def random_map(seed: int, shape=(14, 17), classes: int = 3) -> np.ndarray:
    """Blobs of several sizes: a coarse random grid upsampled, then random pixels changed."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, classes, (shape[0] // 3 + 1, shape[1] // 3 + 1))
    labels = np.kron(coarse, np.ones((3, 3), np.int64))[: shape[0], : shape[1]]
    noise = rng.random(shape) < 0.25
    labels[noise] = rng.integers(0, classes, int(noise.sum()))
    return labels.astype(np.uint8)


@pytest.mark.parametrize("seed", range(6))
def test_each_step_equals_the_brute_force_reference(seed: int) -> None:
    labels = random_map(seed)
    for min_size in (2, 4, 9):
        np.testing.assert_array_equal(
            remove_small_regions(labels, min_size), reference_remove_small(labels, min_size)
        )
    for label in (0, 1, 2):
        np.testing.assert_array_equal(
            keep_largest_region(labels, label), reference_keep_largest(labels, label)
        )
    for label in (1, 2):
        filled = fill_holes(labels, label)
        np.testing.assert_array_equal(filled, reference_fill_holes(labels, label))


@pytest.mark.parametrize("seed", range(4))
def test_region_counts_agree_with_scikit_image(seed: int) -> None:
    measure = pytest.importorskip("skimage.measure")
    labels = random_map(seed, shape=(30, 40))
    for label in (1, 2):
        before = measure.label(labels == label, connectivity=1)
        sizes = np.bincount(before.ravel())[1:]
        kept = keep_largest_region(labels, label) == label
        after = measure.label(kept, connectivity=1)
        assert after.max() == 1 and kept.sum() == sizes.max()
        assert (before[kept] == np.argmax(sizes) + 1).all()  # skimage's first largest region
    cleaned = remove_small_regions(labels, 5)
    for label in np.unique(cleaned):  # every region left is at least 5 pixels
        found = measure.label(cleaned == label, connectivity=1)
        assert np.bincount(found.ravel())[1:].min() >= 5


# ---------------------------------------------------------------- on the inference path


def hand_map() -> np.ndarray:
    """A 2-class map (value = class) whose clean-up is known: a 1-pixel speck outside the
    object, a 1-pixel hole inside it."""
    labels = np.zeros((12, 16), np.uint8)
    labels[2:9, 3:11] = 1
    labels[5, 6] = 0  # hole
    labels[10, 14] = 1  # speck
    return labels


def cleaned_hand_map() -> np.ndarray:
    labels = np.zeros((12, 16), np.uint8)
    labels[2:9, 3:11] = 1
    return labels


def test_predictor_applies_it_to_whole_and_tiled_images(tmp_path, monkeypatch) -> None:
    from unetlab.inference.open import open_model

    checkpoint = oracle_checkpoint(tmp_path, monkeypatch, 2, ["background", "cell"])
    image = (hand_map() * 100).astype(np.uint8)
    steps = {"min_size": 2}
    for tile in (512, 8):  # 8: the 12 x 16 image is cut into overlapping tiles
        predictor = open_model(checkpoint, "cpu", tile=tile, progress=False, postprocessing=steps)
        assert predictor.needs_tiles(*image.shape) == (tile == 8)
        np.testing.assert_array_equal(predictor.predict(image).labels, cleaned_hand_map())
        raw = open_model(checkpoint, "cpu", tile=tile, progress=False)
        np.testing.assert_array_equal(raw.predict(image).labels, hand_map())


def test_stored_postprocessing_reaches_predict_evaluate_and_serve(tmp_path, monkeypatch) -> None:
    from unetlab.data.io import read_mask
    from unetlab.inference.open import open_model
    from unetlab.serve import handlers

    names = ["background", "cell"]
    checkpoint = oracle_checkpoint(tmp_path, monkeypatch, 2, names)
    run = tmp_path / "run"
    truth = cleaned_hand_map()
    image = (hand_map() * 100).astype(np.uint8)
    root = write_dataset(tmp_path / "data", {"a": image}, {"a": truth}, names)

    # evaluate with the options scores the cleaned labels and stores them with the run
    argv = ["evaluate", str(run), "--data", str(root), "--out", str(tmp_path / "ev"),
            "--min-size", "2", "--fill-holes", "--worst", "0", "--save-postprocessing"]
    assert main(argv) == 0
    stored = json.loads((run / "postprocessing.json").read_text())
    assert stored["postprocessing"] == {"min_size": 2, "keep_largest": [], "fill_holes": [1]}
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert report["postprocessing"] == stored["postprocessing"]
    expected_matrix = brute_force_confusion(truth, truth, 2)  # the cleaned labels are the truth
    np.testing.assert_array_equal(report["confusion_matrix"], expected_matrix)

    # predict of the run applies it; --no-postprocessing does not; flags replace it
    assert main(["predict", str(run), str(root / "images" / "a.png"), "--out",
                 str(tmp_path / "p"), "--quiet"]) == 0  # fmt: skip
    np.testing.assert_array_equal(read_mask(tmp_path / "p" / "a_mask.png"), truth)
    assert main(["predict", str(run), str(root / "images" / "a.png"), "--out",
                 str(tmp_path / "raw"), "--quiet", "--no-postprocessing"]) == 0  # fmt: skip
    np.testing.assert_array_equal(read_mask(tmp_path / "raw" / "a_mask.png"), hand_map())
    only_holes = open_model(checkpoint, "cpu", progress=False, postprocessing={"fill_holes": 1})
    expected = hand_map()
    expected[5, 6] = 1  # the hole filled, the speck kept
    np.testing.assert_array_equal(only_holes.predict(image).labels, expected)

    # evaluate without options scores the stored post-processing too
    again = json.loads(
        (tmp_path / "ev2" / "report.json").read_text()
        if main(["evaluate", str(run), "--data", str(root), "--out", str(tmp_path / "ev2"),
                 "--worst", "0"]) == 0 else "{}"
    )  # fmt: skip
    assert again["postprocessing"] == stored["postprocessing"]
    assert again["miou"] == 1.0

    # the web page's prediction and its re-thresholded downloads
    predictor = open_model(run, "cpu", progress=False)
    view = handlers.predict_view(predictor, image, "a.png")
    np.testing.assert_array_equal(view.labels, truth)
    np.testing.assert_array_equal(handlers.labels_at(view, 0.3, 0.5), truth)


def test_a_broken_stored_file_is_named(tmp_path, monkeypatch, capsys) -> None:
    checkpoint = oracle_checkpoint(tmp_path, monkeypatch, 2, ["background", "cell"])
    image_path = tmp_path / "a.png"
    from PIL import Image

    Image.fromarray((hand_map() * 100).astype(np.uint8)).save(image_path)
    stored = tmp_path / "run" / "postprocessing.json"
    for content, message in (
        ("{not json", "not a post-processing file"),
        ('{"postprocessing": {"keep_largest": "nucleus"}}', "no class named 'nucleus'"),
    ):
        stored.write_text(content)
        code = main(["predict", checkpoint, str(image_path), "--out", str(tmp_path / "p")])
        printed = capsys.readouterr().err
        assert code == 2 and message in printed and "postprocessing.json" in printed


def test_inspection_cache_notices_a_changed_postprocessing(tmp_path) -> None:
    from unetlab.data.datasets import open_dataset
    from unetlab.serve.inspection import fingerprint

    root = write_dataset(tmp_path / "data", {"a": np.zeros((4, 4), np.uint8)},
                         {"a": np.zeros((4, 4), np.uint8)}, ["background", "cell"])  # fmt: skip
    model_file = tmp_path / "model.pt"
    model_file.write_bytes(b"x")
    dataset = open_dataset(root, "val", num_classes=2)
    stamps = {
        json.dumps(steps): fingerprint(model_file, dataset, 0.5, steps)
        for steps in (None, PostProcessing().to_dict(), PostProcessing(min_size=3).to_dict())
    }
    assert len(set(stamps.values())) == 3


def test_export_carries_the_stored_postprocessing(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    from test_evaluate import tiny_unet_checkpoint

    from unetlab.artifacts.read import read_card
    from unetlab.export.onnx import export_onnx
    from unetlab.inference.open import open_model

    checkpoint = tiny_unet_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    steps = {"min_size": 4, "keep_largest": [2], "fill_holes": [1]}
    (tmp_path / "run" / "postprocessing.json").write_text(json.dumps({"postprocessing": steps}))
    assert read_card(checkpoint).postprocessing == steps
    export_onnx(checkpoint, tmp_path / "model.onnx")
    assert read_card(tmp_path / "model.onnx").postprocessing == steps
    predictor = open_model(tmp_path / "model.onnx", progress=False)
    assert predictor.options.postprocessing == PostProcessing.from_dict(steps)
    image = np.random.default_rng(0).integers(0, 256, (20, 24, 3), np.uint8)
    raw = open_model(tmp_path / "model.onnx", progress=False, postprocessing={})
    np.testing.assert_array_equal(
        predictor.predict(image).labels,
        PostProcessing.from_dict(steps).apply(raw.predict(image).labels),
    )
