"""Reduced precision for prediction, evaluation and bench: what ``auto`` picks, that bf16 really
runs the convolutions in bf16, and that its labels agree with fp32 on a model that learned."""

from __future__ import annotations

import pytest
import torch
from conftest import RGB_NORM as NORM
from conftest import disk_image, trained_tiny_model
from PIL import Image

from unetlab.cli.main import main
from unetlab.errors import UnetlabError
from unetlab.inference import precision as precision_module
from unetlab.inference.precision import autocast_dtype
from unetlab.inference.predictor import Predictor

CPU = torch.device("cpu")


def test_the_command_line_offers_every_precision() -> None:
    from unetlab.cli.options import PRECISIONS

    assert PRECISIONS == precision_module.PRECISIONS


def test_explicit_precisions_and_refusals() -> None:
    assert autocast_dtype("fp32", CPU) is None
    assert autocast_dtype("bf16", CPU) is torch.bfloat16
    with pytest.raises(UnetlabError, match="fp16 needs a CUDA GPU"):
        autocast_dtype("fp16", CPU)
    with pytest.raises(UnetlabError, match="unknown precision 'int4'"):
        autocast_dtype("int4", CPU)


@pytest.mark.parametrize("native", [True, False])
def test_auto_is_bf16_only_where_it_is_native(monkeypatch, native: bool) -> None:
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    assert precision_module.has_native_bf16(CPU) is native
    assert autocast_dtype("auto", CPU) is (torch.bfloat16 if native else None)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return trained_tiny_model()


def test_bf16_predictor_convolves_in_bf16_and_agrees_with_fp32(model) -> None:
    seen: list[torch.dtype] = []
    hook = model.head.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    try:
        image, mask = disk_image(77)
        labels = {}
        for precision in ("fp32", "bf16"):
            predictor = Predictor(
                model, NORM, ["bg", "disk"], device="cpu", precision=precision
            )
            labels[precision] = predictor.predict(image).labels
    finally:
        hook.remove()
    assert seen == [torch.float32, torch.bfloat16]
    assert (labels["fp32"] == mask).mean() > 0.9  # the model learned the disks
    assert (labels["bf16"] == labels["fp32"]).mean() > 0.98


def test_precision_on_an_onnx_file_is_refused(tmp_path, capsys) -> None:
    Image.fromarray(disk_image(1)[0]).save(tmp_path / "a.png")
    args = ["predict", str(tmp_path / "m.onnx"), str(tmp_path / "a.png")]
    assert main([*args, "--precision", "bf16"]) == 2
    assert "--precision bf16 applies to checkpoints" in capsys.readouterr().err


def test_bench_reports_the_precision_it_ran(capsys) -> None:
    args = ["bench", "unet", "--input", "3x32x32", "-o", "base=4", "-o", "depth=2"]
    assert main([*args, "--runs", "2", "--warmup", "0", "--precision", "bf16"]) == 0
    assert "precision=bf16" in capsys.readouterr().out


@pytest.mark.parametrize("native", [True, False])
def test_training_amp_keeps_auto_off_on_cpus(monkeypatch, native: bool) -> None:
    """train.amp shares the mapping, but auto stays fp32 on a CPU even with native bf16."""
    from unetlab.engine.builders import amp_dtype

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: native)
    assert amp_dtype("auto", CPU) is None and amp_dtype("off", CPU) is None
    assert amp_dtype("bf16", CPU) is torch.bfloat16
    with pytest.raises(UnetlabError, match=r"train\.amp fp16 needs a CUDA GPU"):
        amp_dtype("fp16", CPU)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a usable GPU")
def test_one_device_rule_whose_errors_name_the_setting_of_the_command(tmp_path, capsys) -> None:
    """predict, evaluate and bench resolve devices by the inference rule and speak of
    --device; training uses the same rule and speaks of train.device (issue #11)."""
    from conftest import save_model_checkpoint

    from unetlab.engine.distributed import resolve_device as training_device
    from unetlab.inference.open import open_model
    from unetlab.models import build_model

    checkpoint = save_model_checkpoint(build_model("unet", 2, base=4, depth=2), tmp_path / "m.pt")
    with pytest.raises(UnetlabError, match="--device 'cuda' asked for") as caught:
        open_model(checkpoint, "cuda")
    assert "train.device" not in caught.value.format()
    with pytest.raises(UnetlabError, match="unknown --device 'gpu'"):
        open_model(checkpoint, "gpu")
    assert main(["evaluate", str(checkpoint), "--data", str(tmp_path), "--device", "cuda:0"]) == 2
    assert main(["bench", str(checkpoint), "--input", "3x32x32", "--device", "cuda"]) == 2
    errors = capsys.readouterr().err
    assert errors.count("asked for but this machine's torch has no usable GPU") == 2
    assert "train.device" not in errors
    with pytest.raises(UnetlabError, match=r"train\.device 'cuda' asked for"):
        training_device("cuda")
    assert training_device("auto") == torch.device("cpu")
