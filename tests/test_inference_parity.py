"""One inference path: evaluate scores exactly what predict writes, for every kind of artifact,
and the torch path (training validation) computes what the numpy path (predict) computes.

The reference for evaluate is independent of it: the masks ``unetlab predict`` writes, read
back from disk and counted against the truth masks pixel by pixel (``np.bincount``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import (
    RGB_NORM,
    PoolNet,
    ValidNet,
    disk_image,
    save_model_checkpoint,
    trained_tiny_model,
)
from PIL import Image

from unetlab.cli.main import main
from unetlab.data.io import read_mask
from unetlab.data.preprocess import Normalization, image_to_tensor
from unetlab.inference.core import PredictOptions
from unetlab.inference.forward import predict_logits
from unetlab.inference.labels import labels_from_logits
from unetlab.inference.network import TorchNetwork
from unetlab.inference.predictor import Predictor

pytestmark = pytest.mark.usefixtures("one_thread")

TILE = 64  # the 150 x 130 image is predicted in tiles of this input side, the 40 x 52 one whole
SIZES = {"small": (40, 52), "tiled": (150, 130)}
KINDS = {"sigmoid": 1, "binary": 2, "multiclass": 3}
NAMES = {1: ["background", "disk"], 2: ["background", "disk"], 3: ["background", "ring", "core"]}


# ---------------------------------------------------------------- the labelling rule


@pytest.mark.parametrize("channels", [1, 2, 3])
@pytest.mark.parametrize("threshold", [None, 0.3, 0.5, 0.8])
def test_the_rule_gives_the_same_labels_on_torch_and_numpy(channels, threshold) -> None:
    logits = torch.randn(2, channels, 9, 11, generator=torch.Generator().manual_seed(channels))
    logits[0, :, 0, 0] = 0.0  # p = 0.5 exactly (a tie for two and three channels)
    torch_labels = labels_from_logits(logits, threshold, channel_axis=1)
    for index in range(2):
        numpy_labels = labels_from_logits(logits[index].numpy(), threshold)
        np.testing.assert_array_equal(numpy_labels, torch_labels[index].numpy())
    p = torch.softmax(logits, 1) if channels > 1 else torch.sigmoid(logits)
    cut = 0.5 if threshold is None else threshold
    expected = (
        p.argmax(1) if channels == 3 else (p[:, -1] > cut).long()  # the probability definition
    )
    away = (p[:, -1] - cut).abs() > 1e-5 if channels < 3 else torch.ones_like(expected).bool()
    assert torch.equal(torch_labels[away], expected[away])
    if cut == 0.5:  # not above the cut (ties of the argmax go to class 0 too)
        assert int(torch_labels[0, 0, 0]) == 0


# ---------------------------------------------------------------- torch path == numpy path


@pytest.mark.parametrize("net", ["pool", "valid"])
@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("channels_last", [False, True])
def test_torch_path_equals_numpy_path_whole_and_tiled(net, size, channels_last) -> None:
    """Same logits bit for bit: padding, tiles, blending; and the same labels."""
    torch.manual_seed(0)
    model = PoolNet(classes=3) if net == "pool" else ValidNet(classes=2)
    norm = Normalization((0.4, 0.5, 0.6), (0.2, 0.25, 0.3))
    predictor = Predictor(
        model,
        norm,
        ["a", "b", "c"][: 3 if net == "pool" else 2],
        device="cpu",
        channels_last=channels_last,
        options=PredictOptions(tile=TILE),
    )
    image = np.random.default_rng(1).integers(0, 256, (*SIZES[size], 3), np.uint8)
    assert predictor.needs_tiles(*image.shape[:2]) == (size == "tiled")
    numpy_logits = predictor.logits(image)
    network = TorchNetwork(model, "cpu", channels_last=channels_last)
    torch_logits = predict_logits(
        network, image_to_tensor(image, norm)[None], tile=TILE, geometry=predictor.geometry
    )[0]
    np.testing.assert_array_equal(torch_logits.numpy(), numpy_logits)
    np.testing.assert_array_equal(
        labels_from_logits(torch_logits[None], channel_axis=1)[0].numpy(),
        predictor.predict(image).labels,
    )


# ---------------------------------------------------------------- predict == evaluate


def write_dataset(root: Path, classes: int) -> Path:
    for folder in ("images", "masks", "splits"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    ids = []
    for seed, (name, (height, width)) in enumerate(SIZES.items()):
        image, mask = disk_image(100 + seed, height, classes=classes, width=width)
        Image.fromarray(image).save(root / "images" / f"{name}.png")
        Image.fromarray(mask).save(root / "masks" / f"{name}.png")
        ids.append(name)
    for split in ("train", "val"):
        (root / "splits" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return root


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """Per model kind: the dataset, and the .pt with its .onnx and .int8.onnx exports."""
    made = {}
    for kind, channels in KINDS.items():
        folder = tmp_path_factory.mktemp(kind)
        torch.manual_seed(0)
        model = trained_tiny_model(channels)
        checkpoint = save_model_checkpoint(model, folder / "model.pt", NAMES[channels])
        data = write_dataset(folder / "data", len(NAMES[channels]))
        code = main(["export", str(checkpoint), "--out", str(folder / "model.onnx"),
                     "--int8", str(data), "--calibration-images", "2"])  # fmt: skip
        assert code == 0
        made[kind] = (checkpoint, data)
    return made


ARTIFACTS = {
    "pt-fp32": ("model.pt", []),
    "pt-bf16": ("model.pt", ["--precision", "bf16"]),
    "onnx-fp32": ("model.onnx", []),
    "onnx-int8": ("model.int8.onnx", []),
}
CASES = [
    (kind, artifact, threshold)
    for kind in KINDS
    for artifact in ARTIFACTS
    for threshold in ([None, 0.3] if kind != "multiclass" else [None])
]


@pytest.mark.parametrize(("kind", "artifact", "threshold"), CASES)
def test_evaluate_counts_exactly_the_masks_predict_writes(
    artifacts, tmp_path, kind, artifact, threshold
) -> None:
    checkpoint, data = artifacts[kind]
    name, extra = ARTIFACTS[artifact]
    model = checkpoint.with_name(name)
    options = ["--tile", str(TILE), "--device", "cpu", *extra]
    if threshold is not None:
        options += ["--threshold", str(threshold)]
    out = tmp_path / "predicted"
    assert main(["predict", str(model), str(data / "images"), "--out", str(out), "--quiet",
                 *options]) == 0  # fmt: skip
    classes = len(NAMES[KINDS[kind]])
    expected = np.zeros((classes, classes), np.int64)
    for sample in SIZES:
        written = read_mask(out / f"{sample}_mask.png")
        truth = read_mask(data / "masks" / f"{sample}.png")
        counts = np.bincount(truth.ravel() * classes + written.ravel(), minlength=classes**2)
        expected += counts.reshape(classes, classes)
    report_dir = tmp_path / "evaluation"
    assert main(["evaluate", str(model), "--data", str(data), "--out", str(report_dir),
                 "--panels", "0", *options]) == 0  # fmt: skip
    report = json.loads((report_dir / "report.json").read_text())
    np.testing.assert_array_equal(np.array(report["confusion_matrix"]), expected)
    assert report["threshold"] == (threshold if threshold is not None else
                                   (0.5 if kind != "multiclass" else None))  # fmt: skip
    assert expected.trace() > 0.8 * expected.sum()  # the model learned: labels mean something


def test_a_two_channel_export_s_stored_threshold_is_used_by_predict_and_evaluate(
    artifacts, tmp_path
) -> None:
    """Without --threshold, both commands use the threshold stored at export, for a 2-channel
    model too (evaluate once honoured it for 1-channel exports only)."""
    from unetlab.inference.open import open_model

    checkpoint, data = artifacts["binary"]
    exported = tmp_path / "stored.onnx"
    assert main(["export", str(checkpoint), "--out", str(exported), "--threshold", "0.3"]) == 0
    assert open_model(exported).options.threshold == 0.3
    out, report_dir = tmp_path / "predicted", tmp_path / "evaluation"
    options = ["--tile", str(TILE)]
    assert main(["predict", str(exported), str(data / "images"), "--out", str(out), "--quiet",
                 *options]) == 0  # fmt: skip
    assert main(["evaluate", str(exported), "--data", str(data), "--out", str(report_dir),
                 "--panels", "0", *options]) == 0  # fmt: skip
    expected = np.zeros((2, 2), np.int64)
    for sample in SIZES:
        written = read_mask(out / f"{sample}_mask.png")
        truth = read_mask(data / "masks" / f"{sample}.png")
        expected += np.bincount(truth.ravel() * 2 + written.ravel(), minlength=4).reshape(2, 2)
    report = json.loads((report_dir / "report.json").read_text())
    assert report["threshold"] == 0.3
    np.testing.assert_array_equal(np.array(report["confusion_matrix"]), expected)


def test_a_threshold_is_refused_for_multiclass_by_predict_and_evaluate(artifacts, tmp_path, capsys):
    checkpoint, data = artifacts["multiclass"]
    for model in (checkpoint, checkpoint.with_name("model.onnx")):
        assert main(["predict", str(model), str(data / "images"), "--out", str(tmp_path),
                     "--threshold", "0.3"]) == 2  # fmt: skip
        assert main(["evaluate", str(model), "--data", str(data), "--out", str(tmp_path),
                     "--threshold", "0.3"]) == 2  # fmt: skip
        assert capsys.readouterr().err.count("a threshold applies to binary models") == 2


# ---------------------------------------------------------------- bench times predict's path


def test_bench_with_no_flags_runs_what_predict_runs(artifacts) -> None:
    from unetlab.engine.bench import bench
    from unetlab.inference.open import open_model

    checkpoint, _ = artifacts["binary"]
    for model in (checkpoint, checkpoint.with_name("model.onnx")):
        predicted = open_model(model)  # what `unetlab predict MODEL` opens
        result = bench(str(model), input_shape=(3, 40, 40), runs=1, warmup=0)
        assert {"backend": result.backend, **result.settings} == predicted.settings
    torch_settings = open_model(checkpoint, "cpu").settings
    assert torch_settings["layout"] == "channels_last" and torch_settings["precision"] == "fp32"
    assert open_model(checkpoint.with_name("model.onnx")).settings["backend"] == "onnx"
    int8 = open_model(checkpoint.with_name("model.int8.onnx")).settings
    assert int8["precision"] == "int8"


def test_default_layout_of_bench_and_predict_is_nhwc_on_cpus() -> None:
    from unetlab.engine.bench import bench

    result = bench("unet", input_shape=(3, 32, 32), options={"base": 4, "depth": 2}, runs=1,
                   warmup=0, device="cpu")  # fmt: skip
    assert result.backend == "torch" and result.settings["layout"] == "channels_last"
    assert Predictor(ValidNet(), RGB_NORM, ["a", "b"], device="cpu").settings["layout"] == (
        "channels_last"
    )
