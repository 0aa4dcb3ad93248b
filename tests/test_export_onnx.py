"""ONNX export: parity with torch for every registered model, preprocessing inside the graph,
self-describing metadata, and a predictor that runs with torch made unimportable."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from unetlab.data.preprocess import Normalization, image_to_tensor
from unetlab.engine.checkpoint import save_checkpoint
from unetlab.errors import UnetlabError
from unetlab.export.onnx import export_model, export_onnx
from unetlab.export.onnx_runtime import OnnxPredictor, read_metadata
from unetlab.inference.predictor import Predictor
from unetlab.models import build_model, list_models

NAMES = ["background", "cell", "edge"]
COLORS = [[0, 0, 0], [250, 0, 0], [0, 250, 0]]
NORM = Normalization((0.4, 0.5, 0.6), (0.2, 0.25, 0.3))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny valid-padding U-Net checkpoint (3 classes) and its ONNX export."""
    folder = tmp_path_factory.mktemp("export")
    torch.manual_seed(1)
    model = build_model("unet", 3, base=4, depth=2, padding="valid")
    payload = {
        "model": model.spec,
        "state_dict": model.state_dict(),
        "data": {"class_names": NAMES, "class_colors": COLORS, **NORM.to_dict()},
    }
    checkpoint = save_checkpoint(payload, folder / "best.pt")
    report = export_onnx(checkpoint, folder / "model.onnx", threshold=0.7)
    assert report.max_abs_diff <= 1e-4
    return checkpoint, report.path


def model_options(name: str) -> dict:
    """Narrow widths where the architecture has a width option; encoders are fixed."""
    return {"unet": {"base": 8}}.get(name, {})


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_matches_torch(tmp_path: Path, name: str) -> None:
    """Our own ONNX Runtime session on raw pixels against torch on the shared preprocessing
    (not only the figure the export computes for itself), at a second size and batch."""
    model = build_model(name, 2, **model_options(name)).eval()
    report = export_model(model, tmp_path / f"{name}.onnx", spec=model.spec, normalization=NORM)
    assert report.max_abs_diff <= 1e-4
    assert [shape[0] for shape in report.checked_shapes] == [1, 2]
    side = int(model.size_multiple)
    images = np.random.default_rng(3).integers(0, 256, (2, 2 * side, 3 * side, 3), np.uint8)
    with torch.no_grad():
        expected = model(torch.stack([image_to_tensor(im, NORM) for im in images])).numpy()
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    actual = session.run(None, {"image": images.transpose(0, 3, 1, 2).astype(np.float32)})[0]
    assert actual.shape == expected.shape == (2, 2, 2 * side, 3 * side)
    assert np.abs(actual - expected).max() <= 1e-4


def test_normalisation_inside_the_graph_equals_shared_preprocessing(tmp_path: Path) -> None:
    """Raw pixels through ORT == the model on image_to_tensor's output (the training path)."""
    model = build_model("unet", 2, base=4, depth=2).eval()
    report = export_model(model, tmp_path / "m.onnx", spec=model.spec, normalization=NORM)
    image = np.random.randint(0, 256, (3, 8, 12, 3), np.uint8)
    x = torch.stack([image_to_tensor(im, NORM) for im in image])
    with torch.no_grad():
        expected = model(x).numpy()
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    raw = image.transpose(0, 3, 1, 2).astype(np.float32)
    actual = session.run(None, {"image": raw})[0]
    assert np.abs(actual - expected).max() <= 1e-4


def test_export_opset_and_input_scale_from_the_command_line(tmp_path: Path, capsys) -> None:
    """``--opset 13 --input-scale 65535``: the file declares opset 13 and takes 16-bit raw
    pixels, giving what torch gives on the same image read as 16-bit."""
    from unetlab.cli.main import main

    model = build_model("unet", 3, base=4, depth=2).eval()
    payload = {"model": model.spec, "state_dict": model.state_dict(),
               "data": {"class_names": NAMES, "class_colors": COLORS, **NORM.to_dict()}}
    checkpoint = save_checkpoint(payload, tmp_path / "best.pt")
    out = tmp_path / "m.onnx"
    assert main(["export", str(checkpoint), "--out", str(out), "--opset", "13",
                 "--input-scale", "65535"]) == 0
    import onnx

    opsets = {entry.domain: entry.version for entry in onnx.load(str(out)).opset_import}
    assert opsets[""] == 13
    image = np.random.default_rng(4).integers(0, 65536, (16, 20, 3), np.uint16)
    with torch.no_grad():
        expected = model(image_to_tensor(image, NORM)[None]).numpy()  # 16-bit: / 65535
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    actual = session.run(None, {"image": image.transpose(2, 0, 1)[None].astype(np.float32)})[0]
    assert np.abs(actual - expected).max() <= 1e-4
    assert read_metadata(out)["input_scale"] == 65535
    assert "working scale" not in capsys.readouterr().out  # full size: nothing to resize


def test_valid_padding_export_matches_torch(exported) -> None:
    checkpoint, onnx_path = exported
    from unetlab.engine.checkpoint import load_checkpoint, model_from_checkpoint

    model = model_from_checkpoint(load_checkpoint(checkpoint))
    image = np.random.randint(0, 256, (48, 44, 3), np.uint8)  # legal valid input sides
    with torch.no_grad():
        expected = model(image_to_tensor(image, NORM)[None]).numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    actual = session.run(None, {"image": image.transpose(2, 0, 1)[None].astype(np.float32)})[0]
    assert actual.shape == expected.shape == (1, 3, 8, 4)
    assert np.abs(actual - expected).max() <= 1e-4


def test_metadata_describes_the_model(exported) -> None:
    _, onnx_path = exported
    meta = read_metadata(onnx_path)
    assert meta["class_names"] == NAMES and meta["class_colors"] == COLORS
    assert meta["mean"] == pytest.approx(NORM.mean) and meta["std"] == pytest.approx(NORM.std)
    assert meta["input_scale"] == 255 and meta["threshold"] == 0.7
    assert meta["model"] == {
        "name": "unet",
        "num_classes": 3,
        "in_channels": 3,
        "options": {"base": 4, "depth": 2, "padding": "valid"},
    }
    # valid U-Net of depth 2: 44 px in -> 4 px out (margin 40), output sides 4 + 4k
    assert meta["geometry"] == {"multiple": 4, "margin": 40, "out_residue": 0, "min_output": 4}


@pytest.mark.parametrize("size", [(1, 1), (23, 31), (120, 90)])
def test_onnx_predictor_equals_torch_predictor(exported, size) -> None:
    checkpoint, onnx_path = exported
    image = np.random.randint(0, 256, (*size, 3), np.uint8)
    torch_result = Predictor.from_checkpoint(checkpoint, device="cpu", tile=96).predict(image, True)
    onnx_result = OnnxPredictor(onnx_path, tile=96).predict(image, True)
    np.testing.assert_allclose(onnx_result.probabilities, torch_result.probabilities, atol=1e-5)


def test_16_bit_image_scaled_like_training(exported) -> None:
    checkpoint, onnx_path = exported
    image = np.random.randint(0, 65536, (20, 30, 3), np.uint16)
    expected = Predictor.from_checkpoint(checkpoint, device="cpu").predict(image, True)
    actual = OnnxPredictor(onnx_path).predict(image, True)
    np.testing.assert_allclose(actual.probabilities, expected.probabilities, atol=1e-5)


def test_stored_threshold_is_the_default_of_a_binary_export(tmp_path: Path) -> None:
    from conftest import save_model_checkpoint

    model = build_model("unet", 1, base=4, depth=2)
    checkpoint = save_model_checkpoint(model, tmp_path / "best.pt", ["bg", "fg"])
    onnx_path = export_onnx(checkpoint, tmp_path / "model.onnx", threshold=0.7).path
    assert OnnxPredictor(onnx_path).options.threshold == 0.7
    assert OnnxPredictor(onnx_path, threshold=0.4).options.threshold == 0.4


def test_a_multiclass_export_decides_by_argmax(exported) -> None:
    """The stored threshold (0.7) does not apply to 3 classes, and asking for one is refused."""
    _, onnx_path = exported
    assert OnnxPredictor(onnx_path).options.threshold is None
    with pytest.raises(UnetlabError, match="applies to binary models"):
        OnnxPredictor(onnx_path, threshold=0.4)


def test_failed_parity_check_is_an_error(tmp_path: Path) -> None:
    model = build_model("unet", 2, base=4, depth=2)
    with pytest.raises(UnetlabError, match="differs from torch"):
        export_model(
            model, tmp_path / "m.onnx", spec=model.spec, normalization=NORM, tolerance=-1.0
        )


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_foreign_or_broken_onnx_files_are_refused(tmp_path: Path) -> None:
    model = torch.nn.Conv2d(3, 2, 1)
    plain = tmp_path / "plain.onnx"
    torch.onnx.export(model, (torch.randn(1, 3, 8, 8),), str(plain), dynamo=False)
    with pytest.raises(UnetlabError, match="not exported by unetlab"):
        OnnxPredictor(plain)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x00garbage")
    with pytest.raises(UnetlabError, match="cannot load"):
        OnnxPredictor(broken)


def test_onnx_path_runs_without_torch(exported, tmp_path: Path) -> None:
    _, onnx_path = exported
    from PIL import Image

    image_path = tmp_path / "in.png"
    Image.fromarray(np.random.randint(0, 256, (40, 50, 3), np.uint8)).save(image_path)
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None  # any 'import torch' now raises ImportError
        import numpy as np
        from unetlab.export.onnx_runtime import OnnxPredictor
        result = OnnxPredictor({str(onnx_path)!r}, tile=64).predict(
            np.zeros((70, 90, 3), np.uint8), probabilities=True)
        assert result.labels.shape == (70, 90), result.labels.shape
        from unetlab.cli.main import main
        code = main(["predict", {str(onnx_path)!r}, {str(image_path)!r},
                     "--out", {str(tmp_path / "out")!r}, "--quiet"])
        assert code == 0, code
        assert sys.modules["torch"] is None
        print("torch-free ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "torch-free ok" in done.stdout
    assert (tmp_path / "out" / "in_mask.png").is_file()
    assert (tmp_path / "out" / "in_overlay.png").is_file()
    assert (
        json.loads(
            ort.InferenceSession(str(onnx_path)).get_modelmeta().custom_metadata_map["unetlab"]
        )["class_names"]
        == NAMES
    )
