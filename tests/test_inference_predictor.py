"""Predictor from a checkpoint: references built from the shared preprocessing and decision rule,
automatic tiling, batching, channel handling, thresholds, overlays, video, input discovery."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unetlab.data.preprocess import Normalization, image_to_tensor
from unetlab.engine.checkpoint import save_checkpoint
from unetlab.errors import UnetlabError
from unetlab.inference.inputs import discover_inputs
from unetlab.inference.overlay import blend, class_fractions, colorize, legend, make_palette
from unetlab.inference.predictor import Predictor
from unetlab.models import build_model

NAMES = ["background", "cell", "edge"]
COLORS = [[10, 20, 30], [200, 40, 40], [40, 200, 40]]
NORM = Normalization((0.4, 0.5, 0.6), (0.2, 0.25, 0.3))


pytestmark = pytest.mark.usefixtures("one_thread")


def make_checkpoint(folder: Path, classes: int = 3, padding: str = "same", in_channels: int = 3):
    model = build_model("unet", classes, in_channels=in_channels, base=4, depth=2, padding=padding)
    norm = NORM if in_channels == 3 else Normalization((0.5,), (0.25,))
    names = NAMES[: max(classes, 2)]
    payload = {
        "model": model.spec,
        "state_dict": model.state_dict(),
        "data": {"class_names": names, "class_colors": COLORS[: len(names)], **norm.to_dict()},
    }
    save_checkpoint(payload, folder / "checkpoints" / "best.pt")
    return model.eval(), norm


def class_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Independent reference: softmax, or sigmoid and its complement for one channel."""
    if logits.shape[1] == 1:
        return torch.cat([1 - torch.sigmoid(logits), torch.sigmoid(logits)], dim=1)
    return torch.softmax(logits, dim=1)


def reference_logits(model, norm, image: np.ndarray) -> torch.Tensor:
    """Independent path: shared preprocessing, then the model on a size it accepts directly."""
    with torch.no_grad():
        return model(image_to_tensor(image, norm)[None])


def test_predict_matches_preprocess_model_and_decision_rule(tmp_path: Path) -> None:
    model, norm = make_checkpoint(tmp_path)
    predictor = Predictor.from_checkpoint(tmp_path, device="cpu")  # a run folder
    assert predictor.class_names == NAMES
    image = np.random.randint(0, 256, (32, 48, 3), np.uint8)  # multiple of 4: no padding
    result = predictor.predict(image, probabilities=True)
    logits = reference_logits(model, norm, image)
    np.testing.assert_array_equal(result.labels, logits.argmax(1)[0].numpy())  # 3 classes
    np.testing.assert_allclose(
        result.probabilities, class_probabilities(logits)[0].numpy(), atol=1e-5
    )
    assert result.labels.dtype == np.uint8


def test_channels_last_does_not_change_results(tmp_path: Path) -> None:
    make_checkpoint(tmp_path)
    image = np.random.randint(0, 256, (24, 40, 3), np.uint8)
    results = [
        Predictor.from_checkpoint(tmp_path, device="cpu", channels_last=flag).predict(image, True)
        for flag in (False, True)
    ]
    assert Predictor.from_checkpoint(tmp_path, device="cpu").memory_format == torch.channels_last
    np.testing.assert_allclose(results[0].probabilities, results[1].probabilities, atol=1e-5)


@pytest.mark.parametrize("size", [(1, 1), (3, 50), (37, 29)])
def test_any_size_gives_labels_of_that_size(tmp_path: Path, size) -> None:
    make_checkpoint(tmp_path)
    predictor = Predictor.from_checkpoint(tmp_path, device="cpu")
    labels = predictor.predict(np.random.randint(0, 256, (*size, 3), np.uint8)).labels
    assert labels.shape == size and labels.max() < 3


def test_large_image_is_tiled_and_matches_the_whole_image_valid_unet(tmp_path: Path) -> None:
    make_checkpoint(tmp_path, padding="valid")
    image = np.random.randint(0, 256, (90, 75, 3), np.uint8)
    tiled = Predictor.from_checkpoint(tmp_path, device="cpu", tile=64, progress=False)
    whole = Predictor.from_checkpoint(tmp_path, device="cpu", tile=10_000)
    assert tiled.needs_tiles(90, 75) and tiled.tile_count(90, 75) > 4
    assert not whole.needs_tiles(90, 75)
    a, b = tiled.predict(image, probabilities=True), whole.predict(image, probabilities=True)
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)
    np.testing.assert_array_equal(tiled.predict(image).labels, b.labels)


def test_batch_prediction_equals_one_by_one(tmp_path: Path) -> None:
    make_checkpoint(tmp_path)
    predictor = Predictor.from_checkpoint(tmp_path, device="cpu", batch_size=3)
    images = [
        np.random.randint(0, 256, size, np.uint8)
        for size in [(20, 24, 3), (20, 24, 3), (13, 9, 3), (20, 24, 3), (20, 24, 3)]
    ]
    batched = predictor.predict_batch(images, probabilities=True)
    for image, result in zip(images, batched, strict=True):
        single = predictor.predict(image, probabilities=True)
        np.testing.assert_allclose(result.probabilities, single.probabilities, atol=1e-5)


@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.9])
@pytest.mark.parametrize("classes", [1, 2])
def test_threshold_for_binary_models(tmp_path: Path, classes: int, threshold: float) -> None:
    model, norm = make_checkpoint(tmp_path, classes=classes)
    predictor = Predictor.from_checkpoint(tmp_path, device="cpu", threshold=threshold)
    image = np.random.randint(0, 256, (16, 20, 3), np.uint8)
    foreground = class_probabilities(reference_logits(model, norm, image))[0, 1]
    expected = (foreground > threshold).numpy()
    assert len(predictor.class_names) == 2
    np.testing.assert_array_equal(predictor.predict(image).labels, expected)


def test_channel_handling(tmp_path: Path) -> None:
    make_checkpoint(tmp_path)
    predictor = Predictor.from_checkpoint(tmp_path, device="cpu")
    gray = np.random.randint(0, 256, (16, 16), np.uint8)
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    rgba = np.concatenate([rgb, np.full((16, 16, 1), 255, np.uint8)], axis=2)
    expected = predictor.predict(rgb).labels
    np.testing.assert_array_equal(predictor.predict(gray).labels, expected)
    np.testing.assert_array_equal(predictor.predict(rgba).labels, expected)
    with pytest.raises(UnetlabError, match="2 channel"):
        predictor.predict(np.zeros((8, 8, 2), np.uint8), source="two.png")


def test_one_channel_model_accepts_gray_stored_as_rgb(tmp_path: Path) -> None:
    make_checkpoint(tmp_path, in_channels=1)
    predictor = Predictor.from_checkpoint(tmp_path, device="cpu")
    gray = np.random.randint(0, 65536, (12, 16, 1), np.uint16)
    expected = predictor.predict(gray).labels
    np.testing.assert_array_equal(predictor.predict(np.repeat(gray, 3, axis=2)).labels, expected)
    colour = np.random.randint(0, 256, (12, 16, 3), np.uint8)
    with pytest.raises(UnetlabError, match="expects 1"):
        predictor.predict(colour)


def test_tta_option_matches_flipped_predictions(tmp_path: Path) -> None:
    model, norm = make_checkpoint(tmp_path)
    predictor = Predictor.from_checkpoint(tmp_path, device="cpu", tta="flips")
    image = np.random.randint(0, 256, (16, 24, 3), np.uint8)
    x = image_to_tensor(image, norm)[None]
    with torch.no_grad():
        flips = [(), (3,), (2,), (2, 3)]
        mean = sum(model(x.flip(f) if f else x).flip(f) if f else model(x) for f in flips) / 4
    expected = class_probabilities(mean)[0].numpy()
    np.testing.assert_allclose(predictor.predict(image, True).probabilities, expected, atol=1e-5)


@pytest.mark.parametrize(
    "options",
    [{"tile": 0}, {"overlap": 1.0}, {"threshold": 1.0}, {"tta": "spin"}, {"tile_weights": "x"}],
)
def test_invalid_options_are_refused(tmp_path: Path, options: dict) -> None:
    make_checkpoint(tmp_path)
    with pytest.raises(UnetlabError, match=next(iter(options))):
        Predictor.from_checkpoint(tmp_path, device="cpu", **options)


def test_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UnetlabError, match="no checkpoint"):
        Predictor.from_checkpoint(tmp_path, device="cpu")


# --- overlays ---------------------------------------------------------------------------------


def test_palette_colorize_and_blend() -> None:
    palette = make_palette(COLORS)
    assert palette[:3].tolist() == COLORS
    assert palette[3].tolist() == [128, 128, 0]  # VOC colour of class 3 after the given ones
    labels = np.array([[0, 1], [2, 1]], np.uint8)
    image = np.array([[[0, 0, 0], [100, 100, 100]], [[255, 255, 255], [50, 60, 70]]], np.uint8)
    np.testing.assert_array_equal(colorize(labels, palette), np.array(COLORS)[labels])
    np.testing.assert_array_equal(blend(image, labels, palette, 0.0, clear=None), image)
    np.testing.assert_array_equal(
        blend(image, labels, palette, 1.0, clear=None), np.array(COLORS)[labels]
    )
    original = image.copy()
    half = blend(image, labels, palette, 0.5, clear=None).astype(int)
    assert np.abs(half - (image.astype(int) + np.array(COLORS)[labels]) / 2).max() <= 1
    np.testing.assert_array_equal(image, original)  # the input image is left untouched


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_saved_overlay_equals_blend(tmp_path: Path, channels: int) -> None:
    from unetlab.inference.overlay import save_overlay

    image = np.random.randint(0, 256, (9, 7, channels), np.uint8)
    labels = np.random.randint(0, 3, (9, 7)).astype(np.uint8)
    palette = make_palette(COLORS)
    path = save_overlay(tmp_path / "o.png", image, labels, palette, 0.3)
    with Image.open(path) as saved:
        assert saved.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(saved), blend(image, labels, palette, 0.3))


def test_blend_of_gray_16_bit_image() -> None:
    image = np.full((4, 5, 1), 65535, np.uint16)
    out = blend(image, np.zeros((4, 5), np.uint8), make_palette([[0, 0, 0]]), 0.25, clear=None)
    assert out.shape == (4, 5, 3) and abs(int(out[0, 0, 0]) - 191) <= 1


def test_legend_rows_show_the_class_colours() -> None:
    palette = make_palette(COLORS)
    picture = legend(NAMES, palette, [0.5, 0.25, 0.25], row_height=28)
    assert picture.shape[0] == 28 * 3 + 4
    for row, color in enumerate(COLORS):  # the centre of each swatch
        assert picture[2 + row * 28 + 14, 20].tolist() == color


def test_class_fractions() -> None:
    labels = np.array([[0, 0, 2], [2, 2, 2]], np.uint8)
    assert class_fractions(labels, 3) == pytest.approx([2 / 6, 0, 4 / 6])


# --- input discovery and video -----------------------------------------------------------------


def test_discover_files_folders_globs(tmp_path: Path) -> None:
    for name in ["b.png", "a.jpg", "notes.txt", "clip.mp4"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.png").write_bytes(b"x")
    folder = discover_inputs([tmp_path])
    assert [(p.path.name, p.kind) for p in folder] == [
        ("a.jpg", "image"),
        ("b.png", "image"),
        ("clip.mp4", "video"),
    ]
    globbed = discover_inputs([str(tmp_path / "**" / "*.png"), tmp_path / "b.png"])
    assert sorted(p.path.name for p in globbed) == ["b.png", "c.png"]  # no duplicates
    for bad, message in [
        (tmp_path / "notes.txt", "not an image"),
        (tmp_path / "nope.png", "no such file"),
        (str(tmp_path / "*.tif"), "matches no"),
        (tmp_path / "sub" / "empty", "no images or videos"),
    ]:
        (tmp_path / "sub" / "empty").mkdir(exist_ok=True)
        with pytest.raises(UnetlabError, match=message):
            discover_inputs([bad])


def test_video_overlay_has_every_frame_in_order(tmp_path: Path) -> None:
    """Each written frame is the overlay of its own source frame: half the decoded frame plus
    half the colour of the class the model gives each pixel (video codecs are lossy, so within
    a few grey levels on 8 x 8 block means, and closer to its own expected frame than to any
    other)."""
    import cv2

    from unetlab.inference.video import predict_video

    source = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 48))
    ramp = np.linspace(0, 60, 64, dtype=np.float32)[None, :, None]
    for i in range(7):
        writer.write(np.clip(30 * i + ramp + np.zeros((48, 64, 3)), 0, 255).astype(np.uint8))
    writer.release()
    model, norm = make_checkpoint(tmp_path)
    predictor = Predictor.from_checkpoint(tmp_path, device="cpu", batch_size=3)
    result = predict_video(predictor, source, tmp_path / "out.mp4", progress=False)
    assert result.frames == 7 and result.size == (64, 48)

    def frames(path):
        capture = cv2.VideoCapture(str(path))
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield frame[:, :, ::-1].astype(np.float32)  # RGB

    colors = np.array(COLORS, np.float32)
    def blended(frame):  # the background class (0) is left clear, the others 50% colour
        labels = reference_logits(model, norm, frame.astype(np.uint8)).argmax(1)[0].numpy()
        return np.where((labels == 0)[:, :, None], frame, 0.5 * frame + 0.5 * colors[labels])

    expected = [blended(frame) for frame in frames(source)]
    def blocks(frame):  # 8 x 8 block means: what a lossy codec keeps of a per-pixel pattern
        return frame.reshape(6, 8, 8, 8, 3).mean(axis=(1, 3))

    written = list(frames(result.path))
    assert len(written) == len(expected) == 7
    errors = np.array([[np.abs(blocks(w) - blocks(e)).mean() for e in expected] for w in written])
    assert (errors.argmin(axis=1) == np.arange(7)).all(), errors.round(1)
    assert errors.diagonal().max() < 5, errors.diagonal()


def test_undecodable_video_is_a_clear_error(tmp_path: Path) -> None:
    from unetlab.inference.video import predict_video

    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video")
    make_checkpoint(tmp_path)
    predictor = Predictor.from_checkpoint(tmp_path, device="cpu")
    with pytest.raises(UnetlabError, match="cannot open this video"):
        predict_video(predictor, bad, tmp_path / "out.mp4", progress=False)


def test_palette_png_preserves_indices(tmp_path: Path) -> None:
    from unetlab.data.io import write_mask

    labels = np.array([[0, 1, 2]], np.uint8)
    path = write_mask(tmp_path / "m.png", labels, make_palette(COLORS).tolist())
    with Image.open(path) as saved:
        assert saved.mode == "P"
        np.testing.assert_array_equal(np.asarray(saved), labels)
        assert np.asarray(saved.convert("RGB"))[0].tolist() == COLORS
