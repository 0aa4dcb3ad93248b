"""int8 quantisation of exported models: runs under ONNX Runtime, keeps the metadata, agrees
with the float model, and refuses bad calibration input clearly."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from conftest import disk_image, shared_dataset, trained_tiny_model
from PIL import Image

from unetlab.artifacts.card import ModelCard
from unetlab.artifacts.geometry import Geometry
from unetlab.cli.main import main
from unetlab.data.preprocess import Normalization, image_to_tensor
from unetlab.engine.checkpoint import save_checkpoint
from unetlab.engine.evaluate import evaluate
from unetlab.errors import UnetlabError
from unetlab.export.onnx import export_model
from unetlab.export.onnx_runtime import OnnxPredictor, read_metadata
from unetlab.export.quantize import calibration_images, prepare_calibration_input, quantize_onnx

SPEC = {"name": "unet", "num_classes": 2, "in_channels": 3, "options": {"base": 4, "depth": 2}}
NORM = Normalization.default_for(3)


def export_card_of(in_channels: int, input_scale: float = 255.0) -> ModelCard:
    """The card of an export whose network takes sides that are multiples of 16."""
    return ModelCard.build(
        path="model.onnx",
        format="onnx",
        spec={**SPEC, "in_channels": in_channels},
        geometry=Geometry(multiple=16, min_output=16),
        input_scale=input_scale,
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("quant")
    torch.manual_seed(0)
    model = trained_tiny_model()
    path = folder / "model.onnx"
    export_model(model, path, spec=SPEC, normalization=NORM, class_names=["bg", "disk"])
    calibration = [disk_image(seed)[0] for seed in range(10, 14)]
    int8 = quantize_onnx(path, folder / "model.int8.onnx", calibration, num_images=3)
    return model, path, int8


def test_quantized_model_runs_keeps_metadata_and_is_int8(exported):
    _, path, report = exported
    fp32_meta, int8_meta = read_metadata(path), read_metadata(report.path)
    quant = int8_meta.pop("quantization")
    assert int8_meta == fp32_meta
    assert quant["calibration_images"] == 3 and quant["format"] == "QDQ"
    assert report.num_images == 3 and report.input_shapes == [(1, 3, 64, 64)] * 3
    graph = onnx.load(str(report.path)).graph
    ops = {node.op_type for node in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # every convolution's weight arrives through a DequantizeLinear of an int8 initializer
    dequantized = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    dtypes = {t.name: t.data_type for t in graph.initializer}
    convs = [n for n in graph.node if n.op_type in ("Conv", "ConvTranspose")]
    assert len(convs) == 2 * 3 + 2 * 2 + 2 + 1  # depth 2: 3 conv blocks down, 2 up, 2 ups, head
    assert all(dtypes[dequantized[n.input[1]]] == onnx.TensorProto.INT8 for n in convs)


def test_quantized_labels_agree_with_torch_on_most_pixels(exported):
    model, path, report = exported
    image, mask = disk_image(99)
    with torch.no_grad():
        reference = model(image_to_tensor(image, NORM)[None])[0].argmax(0).numpy()
    assert (reference == mask).mean() > 0.9  # the float model really learned the task
    fp32 = OnnxPredictor(path, progress=False).predict(image).labels
    int8 = OnnxPredictor(report.path, progress=False).predict(image).labels
    assert (fp32 == reference).mean() == 1.0
    agreement = (int8 == reference).mean()
    assert agreement > 0.95, f"int8 labels agree with torch on only {agreement:.1%} of pixels"


def test_no_calibration_images_is_a_clear_error(exported, tmp_path):
    _, path, _ = exported
    with pytest.raises(UnetlabError, match="calibration images"):
        quantize_onnx(path, tmp_path / "q.onnx", [])
    assert not (tmp_path / "q.onnx").exists()


def test_file_without_unetlab_metadata_is_refused(tmp_path):
    plain = tmp_path / "plain.onnx"
    model = torch.nn.Conv2d(3, 2, 1).eval()
    torch.onnx.export(model, (torch.zeros(1, 3, 8, 8),), str(plain), dynamo=False)
    with pytest.raises(UnetlabError, match="not exported by unetlab"):
        quantize_onnx(plain, tmp_path / "q.onnx", [np.zeros((8, 8, 3), np.uint8)])


def test_already_quantized_and_unknown_method_are_refused(exported, tmp_path):
    _, path, report = exported
    image = [disk_image(0)[0]]
    with pytest.raises(UnetlabError, match="already quantised"):
        quantize_onnx(report.path, tmp_path / "q.onnx", image)
    with pytest.raises(UnetlabError, match="unknown calibration method"):
        quantize_onnx(path, tmp_path / "q.onnx", image, method="median")


def disk_dataset(root, count: int = 3, side: int = 70, width: int = 50):
    """A plain-layout dataset of disk images: train = even ids, val = odd ids."""
    for folder in ("images", "masks", "splits"):
        (root / folder).mkdir(parents=True)
    for i in range(count):
        image, mask = disk_image(i, side=side)
        Image.fromarray(image[:, :width]).save(root / "images" / f"s{i}.png")
        Image.fromarray(mask[:, :width]).save(root / "masks" / f"s{i}.png")
    ids = [f"s{i}" for i in range(count)]
    (root / "splits" / "train.txt").write_text("\n".join(ids[0::2]) + "\n")
    (root / "splits" / "val.txt").write_text("\n".join(ids[1::2]) + "\n")
    return root


def test_calibration_from_a_dataset_folder(exported, tmp_path):
    _, path, _ = exported
    root = disk_dataset(tmp_path / "data")
    report = quantize_onnx(path, tmp_path / "q.onnx", root, split="train", num_images=8)
    # 70 x 50 images, sides must be multiples of 4 (depth 2): centred 68 x 48 windows
    assert report.input_shapes == [(1, 3, 68, 48)] * 2
    meta = json.loads(
        {p.key: p.value for p in onnx.load(str(report.path)).metadata_props}["unetlab"]
    )
    assert meta["quantization"]["calibration_images"] == 2


def test_calibration_input_is_the_raw_pixel_window_the_graph_takes():
    meta = export_card_of(3)
    rng = np.random.default_rng(1)
    image = rng.integers(0, 65536, (70, 50, 3), dtype=np.uint16)
    x = prepare_calibration_input(image, meta, max_side=64)
    # 64 x 48 is the largest window of multiples of 16; centred: rows 3..66, columns 1..48
    expected = image[3:67, 1:49].transpose(2, 0, 1)[None] * (255.0 / 65535.0)
    assert x.dtype == np.float32 and x.shape == (1, 3, 64, 48)
    np.testing.assert_allclose(x, expected, rtol=1e-6)
    gray = rng.integers(0, 256, (10, 16), dtype=np.uint8)
    # smaller than the multiple: mirror-padded (reflect) to 16 rows, gray repeated to RGB
    padded = prepare_calibration_input(gray, meta, max_side=64)
    rows = np.pad(gray, ((3, 3), (0, 0)), mode="reflect")
    np.testing.assert_array_equal(padded[0, 1], rows.astype(np.float32))
    with pytest.raises(UnetlabError, match="2 channel"):
        prepare_calibration_input(np.zeros((16, 16, 2), np.uint8), meta, max_side=64)


def test_calibration_images_from_the_isbi_training_split():
    root = shared_dataset("isbi2012")
    images = calibration_images(root, "train", 2)
    meta = export_card_of(1)
    x = prepare_calibration_input(images[0], meta, max_side=512)
    assert len(images) == 2 and x.shape == (1, 1, 512, 512)
    assert x.max() <= 255.0 and x.max() > 100  # raw 8-bit pixel values, not normalised


def save_run(model, run):
    payload = {
        "model": SPEC,
        "state_dict": model.state_dict(),
        "data": {"class_names": ["bg", "disk"], **NORM.to_dict()},
    }
    save_checkpoint(payload, run / "checkpoints" / "best.pt")
    return run


def test_export_int8_from_the_command_line(exported, tmp_path, capsys):
    """``unetlab export RUN --int8 DATA``: the fp32 file, then an int8 copy calibrated on the
    named split, whose labels agree with the float model's."""
    model, _, _ = exported
    run = save_run(model, tmp_path / "run")
    root = disk_dataset(tmp_path / "data", count=5, side=64, width=64)
    out = tmp_path / "export" / "disk.onnx"
    args = ["export", str(run), "--out", str(out), "--int8", str(root)]
    assert main([*args, "--calibration-images", "2", "--calibration-split", "val"]) == 0
    printed = capsys.readouterr().out
    int8_path = tmp_path / "export" / "disk.int8.onnx"
    assert out.is_file() and int8_path.is_file() and str(int8_path) in printed
    quant = read_metadata(int8_path)["quantization"]
    assert quant["calibration_images"] == 2 and quant["method"] == "minmax"
    assert quant["source"] == "disk.onnx"
    image, _ = disk_image(98)
    fp32 = OnnxPredictor(out, progress=False).predict(image).labels
    int8 = OnnxPredictor(int8_path, progress=False).predict(image).labels
    assert (fp32 == int8).mean() > 0.95


def test_export_int8_with_a_bad_dataset_writes_nothing(exported, tmp_path, capsys):
    model, _, _ = exported
    payload = {"model": SPEC, "state_dict": model.state_dict(), "data": NORM.to_dict()}
    save_checkpoint(payload, tmp_path / "best.pt")
    out = tmp_path / "m.onnx"
    missing = tmp_path / "no-such-dataset"
    args = ["export", str(tmp_path / "best.pt"), "--out", str(out), "--int8", str(missing)]
    assert main(args) == 2
    assert str(missing) in capsys.readouterr().err
    assert not out.exists()


def test_evaluate_scores_an_export_like_its_checkpoint(exported, tmp_path):
    """evaluate(model.onnx) runs ONNX Runtime through the same loop as the checkpoint: the fp32
    export gives the checkpoint's confusion matrix; the int8 one is scored, not refused."""
    model, path, int8 = exported
    run = save_run(model, tmp_path / "run")
    root = disk_dataset(tmp_path / "data", count=6, side=72, width=54)  # 54: padded to 56
    reports = {
        name: evaluate(source, root, out_dir=tmp_path / name, num_panels=1)
        for name, source in [("torch", run), ("fp32", path), ("int8", int8.path)]
    }
    torch_report, fp32, quantized = reports["torch"], reports["fp32"], reports["int8"]
    assert torch_report.scores["miou"] > 0.8  # the model finds the disks
    np.testing.assert_array_equal(fp32.confusion, torch_report.confusion)
    assert fp32.class_names == ["bg", "disk"] and fp32.checkpoint == str(path)
    assert quantized.confusion.sum() == torch_report.confusion.sum()
    assert abs(quantized.scores["miou"] - torch_report.scores["miou"]) < 0.05
    assert (tmp_path / "int8" / "report.json").is_file()
    bf16 = evaluate(run, root, out_dir=tmp_path / "bf16", num_panels=0, precision="bf16")
    assert abs(bf16.scores["miou"] - torch_report.scores["miou"]) < 0.02
    with pytest.raises(UnetlabError, match="precision bf16 applies to checkpoints"):
        evaluate(path, root, out_dir=tmp_path / "x", precision="bf16")


def _activation_scales(path) -> dict[str, float]:
    """Tensor name -> scale of every QuantizeLinear in an int8 graph."""
    graph = onnx.load(str(path)).graph
    values = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    return {
        node.input[0]: float(values[node.input[1]])
        for node in graph.node
        if node.op_type == "QuantizeLinear" and node.input[1] in values
    }


def test_export_calibration_methods_reach_the_calibrator(exported, tmp_path, capsys, monkeypatch):
    """``--calibration-method`` reaches ONNX Runtime's calibrator as that method, and is
    recorded in the metadata; minmax gives the raw input the range 0..max pixel of the
    calibration images (uint8, asymmetric: scale max / 255). (On so few calibration pixels the
    other methods may pick the same ranges, so their scales cannot tell them apart.)"""
    from onnxruntime import quantization

    model, _, _ = exported
    run = save_run(model, tmp_path / "run")
    root = disk_dataset(tmp_path / "data", count=4, side=64, width=64)  # train: s0, s2
    used = []
    original = quantization.quantize_static

    def recording(*args, **kwargs):
        used.append(kwargs["calibrate_method"])
        return original(*args, **kwargs)

    monkeypatch.setattr(quantization, "quantize_static", recording)
    for method in ("minmax", "entropy", "percentile"):
        out = tmp_path / method / "m.onnx"
        argv = ["export", str(run), "--out", str(out), "--int8", str(root),
                "--calibration-images", "2", "--calibration-method", method]
        assert main(argv) == 0, capsys.readouterr()
        assert read_metadata(out.with_suffix(".int8.onnx"))["quantization"]["method"] == method
    methods = quantization.CalibrationMethod
    assert used == [methods.MinMax, methods.Entropy, methods.Percentile]
    brightest = max(
        float(np.asarray(Image.open(root / "images" / f"s{i}.png")).max()) for i in (0, 2)
    )
    minmax = _activation_scales(tmp_path / "minmax" / "m.int8.onnx")
    assert minmax["image"] == pytest.approx(brightest / 255, rel=1e-6)
