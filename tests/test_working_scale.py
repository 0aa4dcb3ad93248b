"""The working resolution (``data.working_scale``): training reads images and masks at a
scale, prediction resizes its input by it and the scores back to the input's size.

Checked against independent references: shrinking by half against 2 x 2 block means, the mask
against the pixel under each block's centre, score resizing against torch's bilinear
``interpolate``; a checkpoint's prediction against the network run by hand on the half-size
image and resized by torch; the export against the checkpoint; the trainer by the sizes its
dataset hands out and by what its checkpoint's card says.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unetlab.data import open_dataset
from unetlab.data.preprocess import image_to_tensor
from unetlab.data.resolution import resize_image, resize_mask, resize_scores, working_size
from unetlab.engine.trainer import train
from unetlab.inference import open_model
from unetlab.inference.labels import labels_from_logits

from conftest import RGB_NORM, disk_image, save_model_checkpoint, trained_tiny_model  # isort: skip
from test_engine_train import tiny_config, tiny_dataset  # isort: skip

pytestmark = pytest.mark.usefixtures("one_thread")


def test_shrinking_by_half_averages_each_2x2_block(rng) -> None:
    for image in (
        rng.integers(0, 256, (10, 14, 3)).astype(np.uint8),
        rng.integers(0, 65536, (10, 14)).astype(np.uint16),
        rng.random((10, 14, 1)).astype(np.float32),
    ):
        half = resize_image(image, 0.5)
        blocks = image.reshape(5, 2, 7, 2, -1).astype(np.float64).mean(axis=(1, 3))
        assert half.dtype == image.dtype and half.shape[:2] == (5, 7)
        assert half.ndim == image.ndim
        tolerance = 1e-5 if image.dtype == np.float32 else 0.5  # integers: rounded
        assert np.abs(half.reshape(5, 7, -1) - blocks).max() <= tolerance
    assert resize_image(image, 1.0) is image


def test_masks_take_the_label_under_each_centre_and_never_a_new_one(rng) -> None:
    mask = rng.choice(np.array([0, 1, 2, 255], np.uint8), (12, 18))
    assert np.array_equal(resize_mask(mask, 0.5), mask[1::2, 1::2])
    odd = resize_mask(mask, 0.37)
    assert odd.shape == working_size(12, 18, 0.37) == (4, 7)
    assert set(np.unique(odd)) <= {0, 1, 2, 255}


@pytest.mark.parametrize(("classes", "size"), [(3, (14, 18)), (2, (13, 20)), (300, (10, 12))])
def test_scores_are_resized_like_torch_bilinear(rng, classes, size) -> None:
    scores = rng.standard_normal((classes, 7, 9)).astype(np.float32)
    reference = F.interpolate(
        torch.from_numpy(scores)[None], size=size, mode="bilinear", align_corners=False
    )[0].numpy()
    resized = resize_scores(scores, *size)
    assert resized.shape == (classes, *size)
    assert np.abs(resized - reference).max() < 1e-5


@pytest.fixture(scope="module")
def half_scale_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = trained_tiny_model(2)
    path = tmp_path_factory.mktemp("half") / "model.pt"
    save_model_checkpoint(model, path)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["config"] = {"data": {"working_scale": 0.5}}
    torch.save(checkpoint, path)
    return path, model


def blocky_image(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A disk image at half size and the same image doubled (its 2x2 blocks are constant, so
    shrinking it by half gives the half-size image back exactly)."""
    half, _ = disk_image(seed, 48, width=40)
    return half, np.repeat(np.repeat(half, 2, axis=0), 2, axis=1)


def test_a_half_scale_model_sees_half_size_images_and_answers_at_full_size(
    half_scale_checkpoint,
) -> None:
    path, model = half_scale_checkpoint
    predictor = open_model(path, device="cpu", tta=False)
    assert predictor.card.working_scale == 0.5
    half, full = blocky_image(7)
    with torch.no_grad():
        working = model(image_to_tensor(half, RGB_NORM)[None])
    reference = F.interpolate(working, size=full.shape[:2], mode="bilinear", align_corners=False)
    logits = predictor.logits(full)
    assert logits.shape == (2, 96, 80)
    assert np.abs(logits - reference[0].numpy()).max() < 1e-3
    prediction = predictor.predict(full, probabilities=True)
    assert prediction.labels.shape == (96, 80) and prediction.probabilities.shape == (2, 96, 80)
    assert np.array_equal(prediction.labels, labels_from_logits(logits))

    plain = save_model_checkpoint(model, path.with_name("plain.pt"))
    assert open_model(plain, device="cpu").card.working_scale == 1.0


def test_tiled_prediction_at_the_working_scale_is_labelled_at_full_size(
    half_scale_checkpoint,
) -> None:
    path, _ = half_scale_checkpoint
    predictor = open_model(path, device="cpu", tta=False, tile=32, progress=False)
    _, full = blocky_image(8)
    assert predictor.needs_tiles(48, 40)  # the working image, not only the input, is tiled
    logits = predictor.logits(full)
    assert logits.shape == (2, 96, 80)
    assert np.array_equal(predictor.predict(full).labels, labels_from_logits(logits))


def test_an_export_keeps_the_working_scale(half_scale_checkpoint, tmp_path, capsys) -> None:
    pytest.importorskip("onnxruntime")
    from unetlab.cli.main import main

    path, _ = half_scale_checkpoint
    onnx_path = tmp_path / "model.onnx"
    assert main(["export", str(path), "--out", str(onnx_path)]) == 0
    assert "working scale 0.5 (metadata 'working_scale')" in capsys.readouterr().out
    exported = open_model(onnx_path, tta=False)
    assert exported.card.working_scale == 0.5
    _, full = blocky_image(9)
    torch_logits = open_model(path, device="cpu", tta=False).logits(full)
    assert np.abs(exported.logits(full) - torch_logits).max() < 1e-3


def test_training_reads_at_the_working_scale_and_the_checkpoint_says_so(tmp_path) -> None:
    data = tiny_dataset(tmp_path / "shapes")
    full = open_dataset(data, "train")[0]
    half = open_dataset(data, "train", working_scale=0.5)[0]
    height, width = full["mask"].shape
    assert half["image"].shape[1:] == half["mask"].shape == working_size(height, width, 0.5)

    cfg = tiny_config(data, tmp_path / "runs", overrides=("train.epochs=1",
                                                          "data.working_scale=0.5"))
    result = train(cfg)
    predictor = open_model(result.run_dir, device="cpu")
    assert predictor.card.working_scale == 0.5
    image = np.zeros((height, width, 3), np.uint8)
    assert predictor.predict(image).labels.shape == (height, width)
