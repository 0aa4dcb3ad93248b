"""The handlers of ``unetlab serve`` without a browser or a web framework: uploads, predictions,
downloads, error maps, the split inspection and its cache, the file-serving guard."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unetlab.data.io import read_mask
from unetlab.data.preprocess import Normalization
from unetlab.engine.checkpoint import save_checkpoint
from unetlab.errors import UnetlabError
from unetlab.inference.predictor import Predictor
from unetlab.metrics import ConfusionMatrix
from unetlab.models import build_model
from unetlab.serve import handlers
from unetlab.serve.inspection import inspect_split, open_split
from unetlab.serve.model import model_card, open_predictor

NAMES = ["background", "circle", "square"]
COLORS = [[0, 0, 0], [220, 60, 50], [60, 190, 70]]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_run(root: Path, num_outputs: int = 3, names=NAMES, colors=COLORS) -> Path:
    """An untrained but deterministic checkpoint in a run folder."""
    torch.manual_seed(0)
    model = build_model("unet", num_outputs, base=4, depth=2)
    for parameter in model.parameters():  # away from init: varied, non-trivial labels
        parameter.data.add_(torch.randn_like(parameter) * 0.3)
    payload = {
        "model": model.spec,
        "state_dict": model.state_dict(),
        "data": {"class_names": names, "class_colors": colors, **Normalization().to_dict()},
        "config": {"name": "tiny", "data": {"root": "somewhere"}, "train": {"best_metric": "miou"}},
        "epoch": 3,
        "best_metric": 0.25,
        "metrics": {"miou": 0.25, "pixel_acc": 0.5},
    }
    save_checkpoint(payload, root / "checkpoints" / "best.pt")
    return root


def png_of(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def truncated_png() -> bytes:
    """A PNG cut in the middle of its pixel data."""
    data = png_of(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    return data[: len(data) // 2]


# ---------------------------------------------------------------- uploads


def test_decode_upload_reads_png_and_16_bit_tiff_like_files() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(handlers.decode_upload(png_of(rgb), "a.png", 10**6), rgb)
    deep = rng.integers(0, 65536, (5, 6), dtype=np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(deep).save(buffer, format="TIFF")
    decoded = handlers.decode_upload(buffer.getvalue(), "deep.tif", 10**6)
    assert decoded.dtype == np.uint16
    np.testing.assert_array_equal(decoded[:, :, 0], deep)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "empty"),
        (b"hello, this is text and not a picture\n", "not an image"),
        (truncated_png(), "corrupt or truncated"),
    ],
    ids=["empty", "text", "truncated"],
)
def test_decode_upload_refuses_non_images_naming_the_upload(data: bytes, expected: str) -> None:
    with pytest.raises(UnetlabError) as caught:
        handlers.decode_upload(data, "notes.png", 10**6)
    assert expected in caught.value.message
    assert caught.value.path == "notes.png"  # never the temporary file


def test_decode_upload_refuses_too_many_pixels_before_decoding() -> None:
    with pytest.raises(UnetlabError, match="too large") as caught:
        handlers.decode_upload(png_of(np.zeros((100, 100), np.uint8)), "big.png", 5000)
    assert caught.value.path == "big.png"


# ---------------------------------------------------------------- predictions


def test_predict_view_equals_the_predictor_and_counts_shares(tmp_path: Path) -> None:
    predictor = open_predictor(make_run(tmp_path / "run"), device="cpu", progress=False)
    image = np.random.default_rng(1).integers(0, 256, (40, 52, 3), dtype=np.uint8)
    view = handlers.predict_view(predictor, image, "x.png", display_side=26)

    reference = Predictor.from_checkpoint(tmp_path / "run", device="cpu").predict(image, True)
    np.testing.assert_array_equal(view.labels, reference.labels)
    assert len(np.unique(view.labels)) > 1  # the test model is not constant
    counts = np.bincount(reference.labels.ravel(), minlength=3) / reference.labels.size
    np.testing.assert_allclose(view.fractions, counts)
    assert view.foreground is None  # three classes: no threshold
    # display copy: longest side 26, probabilities as bytes of the reference's, resized
    assert view.display_labels.shape == (20, 26) and view.display_image.shape == (20, 26, 3)
    assert view.display_probabilities.shape == (3, 20, 26)
    full = np.rint(reference.probabilities * 255).astype(np.uint8)
    np.testing.assert_array_equal(
        view.display_probabilities[1], handlers.resize(full[1], (26, 20), smooth=True)
    )
    summary = view.summary()
    assert (summary["width"], summary["height"], summary["tiles"]) == (52, 40, 1)


def test_large_images_are_tiled_with_progress_per_forward_pass(tmp_path: Path) -> None:
    predictor = open_predictor(make_run(tmp_path / "run"), device="cpu", tile=32, progress=False)
    image = np.random.default_rng(2).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    seen: list[tuple[int, int]] = []
    view = handlers.predict_view(
        predictor, image, "big.png", progress=lambda done, total: seen.append((done, total))
    )
    tiles = predictor.tile_count(70, 90)
    assert tiles > 1 and view.tiles == tiles
    assert seen == [(i, tiles) for i in range(1, tiles + 1)]
    np.testing.assert_array_equal(view.labels, predictor.predict(image).labels)


def test_binary_threshold_recuts_labels_like_the_predictor(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", 2, ["background", "cell"], [[0, 0, 0], [255, 0, 0]])
    image = np.random.default_rng(3).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    view = handlers.predict_view(open_predictor(run, device="cpu", progress=False), image, "b")
    assert view.foreground is not None
    for threshold in (0.3, 0.5, 0.7):
        expected = Predictor.from_checkpoint(run, device="cpu", threshold=threshold)
        np.testing.assert_array_equal(
            handlers.labels_at(view, threshold, 0.5), expected.predict(image).labels
        )


def test_mask_png_holds_indices_and_colours() -> None:
    labels = np.array([[0, 1], [2, 1]], np.uint8)
    with Image.open(io.BytesIO(handlers.mask_png(labels, COLORS))) as mask:
        assert mask.mode == "P"
        np.testing.assert_array_equal(np.asarray(mask), labels)
        assert mask.getpalette()[:9] == [v for c in COLORS for v in c]


def test_overlay_blends_and_hides_classes() -> None:
    image = np.full((1, 3, 3), 100, np.uint8)
    labels = np.array([[0, 1, 2]], np.uint8)
    # (1 - a) * image + a * colour, rounded; hidden classes show the image
    by_default = handlers.render_overlay(image, labels, COLORS, alpha=0.5)
    assert by_default[0].tolist() == [[100, 100, 100], [160, 80, 75], [80, 145, 85]]
    # the background is left clear by default, as unetlab predict's overlay leaves it
    hidden = handlers.render_overlay(image, labels, COLORS, alpha=0.5, hidden=[0, 2])
    assert hidden[0].tolist() == [[100, 100, 100], [160, 80, 75], [100, 100, 100]]
    # the page's legend may switch the background on: nothing hidden colours every class
    every = handlers.render_overlay(image, labels, COLORS, alpha=0.5, hidden=[])
    assert every[0].tolist() == [[50, 50, 50], [160, 80, 75], [80, 145, 85]]


def test_parse_classes_refuses_unknown_classes() -> None:
    assert handlers.parse_classes("2, 0", 3) == [2, 0]
    assert handlers.parse_classes("", 3) == []
    with pytest.raises(UnetlabError, match="no class 3"):
        handlers.parse_classes("3", 3)
    with pytest.raises(UnetlabError, match="not a list"):
        handlers.parse_classes("a", 3)


# ---------------------------------------------------------------- error map


def test_error_map_against_a_hand_built_case() -> None:
    pixels = [[30, 60, 90], [0, 0, 0], [255, 255, 255], [90, 90, 90], [9, 9, 9]]
    image = np.array([pixels], np.uint8)
    truth = np.array([[0, 1, 1, 2, 255]])
    prediction = np.array([[0, 0, 2, 0, 1]])
    faded = [170 + 60 // 3, 170, 170 + 255 // 3]  # grey of pixel 0; correct pixels fade
    every = handlers.error_map(image, prediction, truth)  # positives: every class but 0
    assert every[0, 0].tolist() == [faded[0]] * 3  # correct
    assert every[0, 1].tolist() == list(handlers.FALSE_NEGATIVE)  # circle missed
    assert every[0, 2].tolist() == list(handlers.OTHER_ERROR)  # circle taken for square
    assert every[0, 3].tolist() == list(handlers.FALSE_NEGATIVE)  # square missed
    assert every[0, 4].tolist() == list(handlers.IGNORED)
    focused = handlers.error_map(image, prediction, truth, focus=2)
    assert focused[0, 1].tolist() == list(handlers.OTHER_ERROR)  # 1 -> 0: not about squares
    assert focused[0, 2].tolist() == list(handlers.FALSE_POSITIVE)  # square where none is
    assert focused[0, 3].tolist() == list(handlers.FALSE_NEGATIVE)
    assert handlers.error_counts(prediction, truth, focus=2) == {
        "false_positive": 1,
        "false_negative": 1,
        "other": 1,
        "ignored": 1,
    }
    assert handlers.error_counts(prediction, truth) == {
        "false_positive": 0,
        "false_negative": 2,
        "other": 1,
        "ignored": 1,
    }


def test_error_map_refuses_mismatched_sizes() -> None:
    with pytest.raises(UnetlabError, match="differ in size"):
        handlers.error_map(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 3)), np.zeros((2, 3)))


# ---------------------------------------------------------------- file guard


def test_resolve_inside_refuses_everything_outside(tmp_path: Path) -> None:
    root = tmp_path / "static"
    (root / "sub").mkdir(parents=True)
    (root / "app.js").write_text("x")
    (root / "sub" / "a.css").write_text("y")
    (tmp_path / "secret.txt").write_text("s")
    (root / "link.txt").symlink_to(tmp_path / "secret.txt")
    assert handlers.resolve_inside(root, "app.js") == (root / "app.js").resolve()
    assert handlers.resolve_inside(root, "sub/a.css") == (root / "sub" / "a.css").resolve()
    for name in [
        "../secret.txt",
        "sub/../../secret.txt",
        str(tmp_path / "secret.txt"),
        "/etc/passwd",
        "..\\secret.txt",
        "link.txt",  # a link leading outside
        "sub",  # a folder
        "missing.js",
        "app.js\0.png",
        "",
    ]:
        assert handlers.resolve_inside(root, name) is None, name


# ---------------------------------------------------------------- model card


def test_model_card_describes_the_checkpoint(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    predictor = open_predictor(run, device="cpu", progress=False)
    card = model_card(run, predictor)
    model = build_model("unet", 3, base=4, depth=2)
    assert card["architecture"] == "unet" and card["options"] == {"base": 4, "depth": 2}
    assert card["parameters"] == sum(p.numel() for p in model.parameters())
    assert [c["name"] for c in card["classes"]] == NAMES
    assert [c["color"] for c in card["classes"]] == COLORS
    assert "multiple of 4 px" in card["input_rule"]
    assert card["training"]["epochs"] == 3 and card["training"]["metrics"]["miou"] == 0.25
    assert card["binary"] is False and card["output"] == "3 channels, softmax"


def test_model_card_of_an_int8_export_reads_its_card(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from unetlab.artifacts.card import ModelCard
    from unetlab.inference.core import PredictOptions
    from unetlab.inference.grid import Geometry

    geometry = Geometry(multiple=16, margin=184, out_residue=4, min_output=4)
    export_card = ModelCard.build(
        path=tmp_path / "model.int8.onnx",
        format="onnx",
        spec={"name": "unet", "num_classes": 1, "in_channels": 1, "options": {"base": 8}},
        geometry=geometry,
        class_names=["background", "cell"],
        quantization={"activations": "uint8"},
    )
    export = SimpleNamespace(  # an OnnxPredictor's attributes, without a real file
        card=export_card,
        class_names=["background", "cell"],
        class_colors=[],
        num_classes=2,
        in_channels=1,
        options=PredictOptions(threshold=0.7),
        geometry=geometry,
    )
    card = model_card(tmp_path / "model.int8.onnx", export)
    assert card["format"] == "ONNX, int8" and card["parameters"] is None
    assert card["output"] == "1 channel, sigmoid" and card["binary"] and card["threshold"] == 0.7
    assert card["input_rule"].startswith("gray, 8 or 16 bit, any size (valid padding, 92 px")
    assert card["training"] is None  # no run folder around the file


# ---------------------------------------------------------------- inspection


@pytest.fixture
def shapes(tmp_path: Path) -> Path:
    from unetlab.data import make_shapes_dataset

    return make_shapes_dataset(
        tmp_path / "data", n_train=1, n_val=5, size=32, seed=4, num_classes=3
    )


def test_inspection_ranks_images_worst_first_against_independent_scores(
    tmp_path: Path, shapes: Path
) -> None:
    run = make_run(tmp_path / "run")
    predictor = open_predictor(run, device="cpu", progress=False)
    folder = tmp_path / "cache"
    result = inspect_split(
        predictor, open_split(predictor, shapes, "val"), run / "checkpoints" / "best.pt", folder
    )

    reference = Predictor.from_checkpoint(run, device="cpu")
    ids = (shapes / "splits" / "val.txt").read_text().split()
    expected, total = {}, ConfusionMatrix(3)
    for sample_id in ids:
        image = np.array(Image.open(shapes / "images" / f"{sample_id}.png"))
        truth = read_mask(shapes / "masks" / f"{sample_id}.png")
        labels = reference.predict(image).labels
        matrix = np.zeros((3, 3), np.int64)
        np.add.at(matrix, (truth.ravel(), labels.ravel()), 1)
        tp = np.diag(matrix)
        union = matrix.sum(0) + matrix.sum(1) - tp
        expected[sample_id] = np.mean(tp[union > 0] / union[union > 0])
        total.update(labels, truth)
    assert [row["id"] for row in result.rows] == sorted(ids, key=lambda i: expected[i])
    for row in result.rows:
        assert row["miou"] == pytest.approx(expected[row["id"]])
        image = np.array(Image.open(shapes / "images" / f"{row['id']}.png"))
        np.testing.assert_array_equal(
            result.prediction(row["index"]), reference.predict(image).labels
        )
    assert result.confusion == total.matrix.tolist()
    assert result.scores["miou"] == pytest.approx(total.compute()["miou"])
    assert not result.from_cache and (folder / "inspection.json").is_file()


def test_inspection_is_read_from_the_cache_until_a_file_changes(
    tmp_path: Path, shapes: Path
) -> None:
    run = make_run(tmp_path / "run")
    checkpoint = run / "checkpoints" / "best.pt"
    predictor = open_predictor(run, device="cpu", progress=False)
    dataset = open_split(predictor, shapes, "val")
    first = inspect_split(predictor, dataset, checkpoint, tmp_path / "cache")
    calls = []
    second = inspect_split(predictor, dataset, checkpoint, tmp_path / "cache", run=calls.append)
    assert second.from_cache and calls == []  # nothing predicted again
    assert second.to_dict()["rows"] == first.to_dict()["rows"]
    assert second.confusion == first.confusion

    # a mask edited since: the cache no longer holds, the split is scored again
    mask_path = dataset.paths(0)[1]
    mask = read_mask(mask_path)
    mask[:4, :4] = 0
    Image.fromarray(mask).save(mask_path)
    dataset = open_split(predictor, shapes, "val")
    third = inspect_split(predictor, dataset, checkpoint, tmp_path / "cache")
    assert not third.from_cache


def test_binary_inspection_adds_pixel_and_rand_errors(tmp_path: Path) -> None:
    from unetlab.data import make_shapes_dataset

    data = make_shapes_dataset(tmp_path / "data", n_train=1, n_val=2, size=32, num_classes=2)
    run = make_run(tmp_path / "run", 2, ["background", "circle"], [[0, 0, 0], [255, 0, 0]])
    predictor = open_predictor(run, device="cpu", progress=False)
    result = inspect_split(
        predictor, open_split(predictor, data, "val"), run / "checkpoints" / "best.pt", None
    )
    assert result.boundary_class == 0  # no class named like a boundary: class 0
    for row in result.rows:
        truth = read_mask(data / "masks" / f"{row['id']}.png")
        prediction = result.prediction(row["index"])
        assert row["pixel_error"] == pytest.approx(np.mean(prediction != truth))
        assert 0 <= row["adapted_rand_error"] <= 1


def test_inspection_refuses_a_split_that_does_not_exist(tmp_path: Path, shapes: Path) -> None:
    predictor = open_predictor(make_run(tmp_path / "run"), device="cpu", progress=False)
    with pytest.raises(UnetlabError, match="no split 'test'"):
        open_split(predictor, shapes, "test")
