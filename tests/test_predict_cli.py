"""``unetlab predict``, ``export`` and ``bench`` through the real entry point."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unetlab.cli.main import main
from unetlab.data.preprocess import Normalization
from unetlab.engine.checkpoint import save_checkpoint
from unetlab.inference.predictor import Predictor
from unetlab.models import build_model

NAMES = ["background", "road", "car"]
COLORS = [[0, 0, 0], [128, 64, 128], [64, 0, 128]]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    model = build_model("unet", 3, base=4, depth=2)
    payload = {
        "model": model.spec,
        "state_dict": model.state_dict(),
        "data": {"class_names": NAMES, "class_colors": COLORS, **Normalization().to_dict()},
    }
    save_checkpoint(payload, tmp_path / "run" / "checkpoints" / "best.pt")
    return tmp_path / "run"


def save_image(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    array = np.random.randint(0, 256, shape, np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return array


def test_predict_writes_palette_masks_overlays_and_legend(run_dir, tmp_path, capsys) -> None:
    first = save_image(tmp_path / "in" / "a.png", (30, 41, 3))
    save_image(tmp_path / "in" / "b.png", (1, 1, 3))
    save_image(tmp_path / "other" / "a.png", (16, 16))  # same name, gray
    out = tmp_path / "out"
    code = main(
        [
            "predict",
            str(run_dir),
            str(tmp_path / "in"),
            str(tmp_path / "other" / "*.png"),
            "--out",
            str(out),
            "--blend",
            "0.4",
            "--quiet",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    for name in ["a_mask.png", "a_overlay.png", "b_mask.png", "a_2_mask.png", "legend.png"]:
        assert (out / name).is_file() and str(out / name) in printed
    with Image.open(out / "a_mask.png") as mask:
        assert mask.mode == "P"  # raw indices kept, colours from the checkpoint
        labels = np.asarray(mask)
        assert mask.getpalette()[:9] == [v for c in COLORS for v in c]
    expected = Predictor.from_checkpoint(run_dir, device="cpu").predict(first).labels
    np.testing.assert_array_equal(labels, expected)
    with Image.open(out / "a_overlay.png") as overlay:
        assert overlay.size == (41, 30) and overlay.mode == "RGB"
    with Image.open(out / "b_mask.png") as tiny:
        assert tiny.size == (1, 1)
    assert "3 input(s) predicted" in printed


def test_large_image_is_tiled_from_the_command_line(run_dir, tmp_path) -> None:
    image = save_image(tmp_path / "big.png", (150, 90, 3))
    out = tmp_path / "out"
    assert (
        main(
            [
                "predict",
                str(run_dir),
                str(tmp_path / "big.png"),
                "--tile",
                "64",
                "--overlap",
                "0.5",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    with Image.open(out / "big_mask.png") as mask:
        labels = np.asarray(mask)
    tiled = Predictor.from_checkpoint(run_dir, device="cpu", tile=64, overlap=0.5)
    assert tiled.needs_tiles(150, 90)
    np.testing.assert_array_equal(labels, tiled.predict(image).labels)


def test_bad_inputs_give_one_clear_error(run_dir, tmp_path, capsys) -> None:
    assert main(["predict", str(run_dir), str(tmp_path / "missing.png")]) == 2
    assert "no such file" in capsys.readouterr().err
    save_image(tmp_path / "x.png", (8, 8, 3))
    assert main(["predict", str(tmp_path / "nothing"), str(tmp_path / "x.png")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert main(["predict", str(run_dir), str(tmp_path / "x.png"), "--backend", "onnx"]) == 2
    assert "needs an exported .onnx file" in capsys.readouterr().err


def test_threshold_on_a_multiclass_model_is_refused(run_dir, tmp_path, capsys) -> None:
    """As evaluate refuses it: a multi-class model's labels are the argmax."""
    save_image(tmp_path / "x.png", (8, 8, 3))
    assert (
        main(
            [
                "predict",
                str(run_dir),
                str(tmp_path / "x.png"),
                "--threshold",
                "0.3",
                "--out",
                str(tmp_path / "out"),
                "--quiet",
            ]
        )
        == 2
    )
    assert "a threshold applies to binary models" in capsys.readouterr().err


def test_export_then_predict_with_onnx_gives_the_same_masks(run_dir, tmp_path, capsys) -> None:
    save_image(tmp_path / "in" / "a.png", (37, 29, 3))
    onnx_path = tmp_path / "model.onnx"
    assert main(["export", str(run_dir), "--out", str(onnx_path)]) == 0
    assert "max |diff|" in capsys.readouterr().out
    for backend, model in [("torch", run_dir), ("onnx", onnx_path)]:
        assert (
            main(
                [
                    "predict",
                    str(model),
                    str(tmp_path / "in"),
                    "--backend",
                    backend,
                    "--out",
                    str(tmp_path / backend),
                    "--quiet",
                ]
            )
            == 0
        )
    with (
        Image.open(tmp_path / "torch" / "a_mask.png") as a,
        Image.open(tmp_path / "onnx" / "a_mask.png") as b,
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_bench_prints_latency_and_fps(backend, capsys) -> None:
    code = main(
        [
            "bench",
            "unet",
            "-o",
            "base=4",
            "-o",
            "depth=2",
            "--input",
            "3x30x30",
            "--runs",
            "3",
            "--warmup",
            "1",
            "--threads",
            "1",
            "--backend",
            backend,
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "input     batch 1 x 3 x 30 x 30" in printed  # predicted as predict would (padded)
    assert "median" in printed and "FPS" in printed and "1 thread" in printed


def test_bench_of_an_unknown_target(capsys) -> None:
    assert main(["bench", "no_such_model_or_file"]) == 2
    assert "model names" in capsys.readouterr().err
