"""Overlays leave the background clear; videos can write one index mask per frame."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from unetlab.data.io import read_mask
from unetlab.inference.core import Prediction
from unetlab.inference.overlay import blend, make_palette

COLOURS = [[0, 0, 0], [255, 0, 0], [0, 0, 255]]


def test_background_stays_clear_and_other_classes_are_tinted():
    image = np.array([[[10, 20, 30], [200, 100, 50]], [[90, 90, 90], [0, 255, 128]]], np.uint8)
    labels = np.array([[0, 1], [2, 0]], np.uint8)
    palette = make_palette(COLOURS)
    out = blend(image, labels, palette, alpha=0.25).astype(int)
    np.testing.assert_array_equal(out[labels == 0], image[labels == 0])  # untouched
    # class 1 at opacity 0.25 (weight 64 of 256), by hand: (200 * 192 + 255 * 64 + 128) >> 8
    assert out[0, 1].tolist() == [214, 75, 38]
    assert out[1, 0].tolist() == [68, 68, 131]  # (90 * 192 + 255 * 64 + 128) >> 8 = 131
    every = blend(image, labels, palette, alpha=0.25, clear=None).astype(int)
    assert every[0, 0].tolist() == [8, 15, 23]  # background darkened: (10 * 192 + 128) >> 8
    both = blend(image, labels, palette, alpha=1.0, clear=[0, 2])
    np.testing.assert_array_equal(both[1, 0], image[1, 0])
    assert both[0, 1].tolist() == [255, 0, 0]


class _ThresholdPredictor:
    """Class 1 where the red channel is above 127: a rule the test can recompute."""

    class_colors = COLOURS
    in_channels = 3
    options = SimpleNamespace(batch_size=2)

    def predict_batch(self, frames):
        return [Prediction(labels=(f[:, :, 0] > 127).astype(np.uint8)) for f in frames]


def _video(path: Path, frames: int = 3) -> None:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5, (32, 24))
    for index in range(frames):
        picture = np.zeros((24, 32, 3), np.uint8)
        picture[:, : 8 * (index + 1), 2] = 255  # a red band (BGR), wider each frame
        writer.write(picture)
    writer.release()


def test_video_writes_one_mask_per_frame_beside_the_overlay(tmp_path):
    from unetlab.inference.video import predict_video, read_frames

    source = tmp_path / "clip.mp4"
    _video(source)
    result = predict_video(
        _ThresholdPredictor(), source, tmp_path / "out" / "clip_overlay.mp4", progress=False,
        masks_dir=tmp_path / "out" / "clip_masks",
    )  # fmt: skip
    assert result.frames == 3 and result.path.is_file()
    decoded = [frame for batch in read_frames(source) for frame in batch]
    written = sorted((tmp_path / "out" / "clip_masks").iterdir())
    assert [p.name for p in written] == [f"clip_{i:06d}.png" for i in range(3)]
    for frame, path in zip(decoded, written, strict=True):
        np.testing.assert_array_equal(read_mask(path), (frame[:, :, 0] > 127).astype(np.uint8))
    assert read_mask(written[2]).sum() > read_mask(written[0]).sum()


def test_video_without_masks_dir_writes_no_masks(tmp_path):
    from unetlab.inference.video import predict_video

    source = tmp_path / "clip.mp4"
    _video(source, frames=1)
    result = predict_video(_ThresholdPredictor(), source, tmp_path / "o.mp4", progress=False)
    assert result.masks_dir is None and sorted(p.name for p in tmp_path.iterdir()) == [
        "clip.mp4", "o.mp4"
    ]  # fmt: skip


@pytest.mark.parametrize("alpha", [-0.1, 1.5])
def test_opacity_outside_0_1_is_refused(alpha):
    with pytest.raises(ValueError, match="alpha"):
        blend(np.zeros((1, 1, 3), np.uint8), np.zeros((1, 1), np.uint8), make_palette(), alpha)
