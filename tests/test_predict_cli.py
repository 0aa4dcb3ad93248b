"""``unetlab predict``, ``export`` and ``bench`` through the real entry point."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unetlab.cli.main import main
from unetlab.data.preprocess import Normalization, image_to_tensor
from unetlab.engine.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from unetlab.inference.predictor import Predictor
from unetlab.models import build_model

from test_inference_tta import dihedral_mean  # isort: skip

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
            "--alpha",
            "0.4",
            "--quiet",
            "-v",
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


def _predicted_mask(run_dir: Path, image: Path, out: Path, *options: str) -> np.ndarray:
    assert main(["predict", str(run_dir), str(image), "--out", str(out), "--quiet",
                 "--device", "cpu", *options]) == 0
    with Image.open(out / f"{image.stem}_mask.png") as mask:
        return np.asarray(mask)


def test_tta_options_average_flips_and_rotations(run_dir, tmp_path) -> None:
    """Against the written-out reference: the random U-Net's outputs on the 4 flips
    (``--tta``) or the 8 symmetries (``--tta-rot90``), each turned back, averaged."""
    image = save_image(tmp_path / "a.png", (32, 40, 3))  # multiples of 4, under one tile
    model = model_from_checkpoint(load_checkpoint(run_dir)).eval()
    x = image_to_tensor(image, Normalization())[None]
    with torch.no_grad():
        expected = {
            (): model(x).argmax(1)[0].numpy(),
            ("--tta",): dihedral_mean(model, x).argmax(1)[0].numpy(),
            ("--tta-rot90",): dihedral_mean(model, x, rotations=True).argmax(1)[0].numpy(),
        }
    masks = [expected[key] for key in expected]
    assert all(not np.array_equal(a, b) for i, a in enumerate(masks) for b in masks[i + 1 :])
    for options, labels in expected.items():
        out = tmp_path / ("out" + "".join(options))
        np.testing.assert_array_equal(_predicted_mask(run_dir, tmp_path / "a.png", out, *options),
                                      labels, err_msg=str(options))


def test_tile_weights_choose_the_blending(run_dir, tmp_path) -> None:
    image = save_image(tmp_path / "big.png", (100, 72, 3))
    references = {
        blend: Predictor.from_checkpoint(
            run_dir, device="cpu", tile=32, overlap=0.5, tile_weights=blend
        ).predict(image).labels
        for blend in ("gaussian", "linear", "constant")
    }
    blends = list(references.values())
    assert all(not np.array_equal(a, b) for i, a in enumerate(blends) for b in blends[i + 1 :])
    for blend, labels in references.items():
        mask = _predicted_mask(run_dir, tmp_path / "big.png", tmp_path / blend, "--tile", "32",
                               "--overlap", "0.5", "--tile-weights", blend)
        np.testing.assert_array_equal(mask, labels, err_msg=blend)


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


def test_bench_statistics_from_known_timings() -> None:
    from unetlab.engine.bench import BenchResult

    times = [0.050, 0.010, 0.030, 0.020, 0.040]  # seconds, unsorted
    result = BenchResult("m", "torch", (4, 3, 8, 8), 1, times)
    assert result.median_ms == pytest.approx(30.0)
    # 90th percentile, linear between order statistics: 40 + 0.6 * (50 - 40) ms
    assert result.p90_ms == pytest.approx(46.0)
    assert result.fps == pytest.approx(4 / 0.030)  # a batch of 4 images per median run
    text = result.format()
    assert "median 30.0 ms, p90 46.0 ms over 5 runs" in text
    assert "133.33 images/s" in text


def test_bench_times_what_it_is_asked_to(monkeypatch, capsys) -> None:
    """``--batch`` and ``--channels-last`` reach the timed forward pass; the printed statistics
    are those of the timings measured (a clock that advances 5 ms per run)."""
    import unetlab.engine.bench as bench_module
    import unetlab.models as models_module

    seen = []

    class Recorder(torch.nn.Module):
        size_multiple = 4
        in_channels = 3

        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 2, 3, padding=1)

        def forward(self, x):
            seen.append((tuple(x.shape), x.is_contiguous(memory_format=torch.channels_last),
                         self.conv.weight.is_contiguous(memory_format=torch.channels_last)))
            return self.conv(x)

    clock = iter(np.arange(0.0, 100.0, 0.0025))
    monkeypatch.setattr(models_module, "list_models", lambda: ["x"])
    monkeypatch.setattr(models_module, "build_model", lambda *args, **kwargs: Recorder())
    fake_time = types.SimpleNamespace(perf_counter=lambda: float(next(clock)))
    monkeypatch.setattr(bench_module, "time", fake_time)
    for channels_last in (False, True):
        seen.clear()
        layout = "--channels-last" if channels_last else "--no-channels-last"
        argv = ["bench", "x", "--input", "3x30x30", "--batch", "3", "--runs", "4", "--warmup",
                "2", "--device", "cpu", layout]
        assert main(argv) == 0
        printed = capsys.readouterr().out
        assert seen == [((3, 3, 32, 32), channels_last, channels_last)] * (2 + 4)
        assert "input     batch 3 x 3 x 30 x 30" in printed  # predicted padded to 32
        assert f"layout={'channels_last' if channels_last else 'nchw'}" in printed
        # each timed run reads the clock twice, 2.5 ms apart: 2.5 ms per batch of 3
        assert "median 2.5 ms, p90 2.5 ms over 4 runs" in printed
        assert "1200.00 images/s" in printed
