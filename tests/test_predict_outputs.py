"""What ``predict`` writes beside masks and overlays: ``--save-probs`` (class probabilities)
and ``--masks`` (one index mask per video frame); and the run folder's ``predictions/``."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from unetlab.cli.main import main
from unetlab.data.io import read_mask
from unetlab.data.preprocess import Normalization, image_to_tensor
from unetlab.engine.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from unetlab.inference.predictor import Predictor
from unetlab.models import build_model

from test_overlay_video import _video  # isort: skip

pytestmark = pytest.mark.usefixtures("one_thread")

COLORS = [[0, 0, 0], [200, 30, 30], [30, 30, 200]]


def _run(folder: Path, channels: int) -> Path:
    model = build_model("unet", channels, base=4, depth=2)
    names = ["background", "a", "b"][: max(channels, 2)]
    payload = {
        "model": model.spec,
        "state_dict": model.state_dict(),
        "data": {"class_names": names, "class_colors": COLORS[: len(names)],
                 **Normalization().to_dict()},
    }  # fmt: skip
    save_checkpoint(payload, folder / "checkpoints" / "best.pt")
    return folder


def _image(path: Path, shape: tuple[int, ...], seed: int) -> np.ndarray:
    array = np.random.default_rng(seed).integers(0, 256, shape, np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return array


@pytest.mark.parametrize("channels", [3, 1])  # softmax over 3 classes; one sigmoid channel
def test_saved_probabilities_are_the_models_and_their_argmax_is_the_mask(tmp_path, channels):
    run = _run(tmp_path / "run", channels)
    small = _image(tmp_path / "in" / "small.png", (32, 40, 3), 1)  # one pass, multiples of 4
    _image(tmp_path / "in" / "big.png", (150, 90, 3), 2)  # tiled at --tile 64
    out = tmp_path / "out"
    assert main(["predict", str(run), str(tmp_path / "in"), "--save-probs", "--tile", "64",
                 "--out", str(out), "--quiet", "--device", "cpu"]) == 0  # fmt: skip
    for name, (height, width) in (("small", (32, 40)), ("big", (150, 90))):
        probs = np.load(out / f"{name}_probs.npy")
        assert probs.dtype == np.float32 and probs.shape == (3 if channels == 3 else 2,
                                                             height, width)  # fmt: skip
        np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)
        assert (probs >= 0).all()
        np.testing.assert_array_equal(probs.argmax(axis=0), read_mask(out / f"{name}_mask.png"))
    # the reference: the network run by plain torch on the small image, softmax or sigmoid
    model = model_from_checkpoint(load_checkpoint(run)).eval()
    with torch.no_grad():
        logits = model(image_to_tensor(small, Normalization())[None])[0]
    if channels == 1:
        foreground = torch.sigmoid(logits[0])
        expected = torch.stack([1 - foreground, foreground]).numpy()
    else:
        expected = torch.softmax(logits, dim=0).numpy()
    np.testing.assert_allclose(np.load(out / "small_probs.npy"), expected, atol=1e-5)


def test_save_probs_is_refused_for_a_video_before_any_work(tmp_path, capsys):
    run = _run(tmp_path / "run", 3)
    _video(tmp_path / "clip.mp4")
    out = tmp_path / "out"
    assert main(["predict", str(run), str(tmp_path / "clip.mp4"), "--save-probs",
                 "--out", str(out)]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "--save-probs" in err and "clip.mp4" in err and "--masks" in err
    assert not out.exists()


def test_masks_flag_writes_each_frames_labels_beside_the_overlay_video(tmp_path, capsys):
    from unetlab.inference.video import read_frames

    run = _run(tmp_path / "run", 3)
    _video(tmp_path / "clip.mp4", frames=3)
    out = tmp_path / "out"
    assert main(["predict", str(run), str(tmp_path / "clip.mp4"), "--masks", "--out", str(out),
                 "--quiet", "--device", "cpu", "-v"]) == 0  # fmt: skip
    assert (out / "clip_overlay.mp4").is_file()
    written = sorted((out / "clip_masks").iterdir())
    assert [p.name for p in written] == [f"clip_{i:06d}.png" for i in range(3)]
    predictor = Predictor.from_checkpoint(run, device="cpu")
    frames = [frame for batch in read_frames(tmp_path / "clip.mp4") for frame in batch]
    for frame, path in zip(frames, written, strict=True):
        np.testing.assert_array_equal(read_mask(path), predictor.predict(frame).labels)
    printed = capsys.readouterr().out
    assert "(3 frames" in printed and f"  -> {out / 'clip_masks'}" in printed
    assert main(["predict", str(run), str(tmp_path / "clip.mp4"), "--out",
                 str(tmp_path / "plain"), "--quiet"]) == 0  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "plain").iterdir()) == [
        "clip_overlay.mp4", "legend.png"
    ]  # fmt: skip


def test_run_predictions_hold_panel_mask_and_overlay(tmp_path):
    """``RUN/predictions/``: the overlay is the image tinted where the written mask says, by
    :func:`unetlab.inference.overlay.blend` (background clear), from the image as read."""
    from unetlab.engine.predictions import save_predictions
    from unetlab.inference.overlay import blend, make_palette

    norm = Normalization(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    image = np.random.default_rng(3).integers(0, 256, (16, 20, 3), np.uint8)
    sample = {"image": image_to_tensor(image, norm), "mask": torch.zeros(16, 20, dtype=torch.long),
              "id": "dir/s0"}  # fmt: skip
    spec = SimpleNamespace(normalization=norm, class_colors=COLORS, class_names=["bg", "a", "b"])
    model = build_model("unet", 3, base=4, depth=2)
    written = save_predictions(model, [sample], spec, tmp_path, 1, torch.device("cpu"))
    assert [p.name for p in written] == ["dir_s0.png", "dir_s0_mask.png", "dir_s0_overlay.png"]
    labels = read_mask(tmp_path / "dir_s0_mask.png")
    with Image.open(tmp_path / "dir_s0_overlay.png") as overlay:
        picture = np.asarray(overlay.convert("RGB"))
    np.testing.assert_array_equal(picture, blend(image, labels, make_palette(COLORS)))
    assert (labels > 0).any() and (labels == 0).any()  # both the tinted and the clear rule seen
