"""Model summary: FLOPs and parameters against hand counts, the table, the CLI command."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from unetlab.cli.main import main
from unetlab.engine.checkpoint import save_checkpoint
from unetlab.models import build_model
from unetlab.models.summary import summarize


def test_single_conv_flops_and_params_by_hand():
    conv = nn.Conv2d(3, 8, kernel_size=3, padding=1)
    summary = summarize(conv, (3, 16, 16))
    assert summary.flops == 2 * 3 * 8 * 3 * 3 * 16 * 16  # 2 x Cin x Cout x k x k x H x W
    assert summary.total_params == 3 * 8 * 3 * 3 + 8
    assert summary.conv_layers == 1 and summary.output_shape == (1, 8, 16, 16)


def test_table_rows_totals_and_rendering():
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 2, 1),
    )  # fmt: skip
    model[0].requires_grad_(False)
    summary = summarize(model, (1, 8, 8))
    rows = [(r.name, r.type, r.output_shape, r.params) for r in summary.layers]
    assert rows == [
        ("0", "Conv2d", (1, 4, 8, 8), 40),
        ("1", "BatchNorm2d", (1, 4, 8, 8), 8),
        ("2", "ReLU", (1, 4, 8, 8), 0),
        ("3", "MaxPool2d", (1, 4, 4, 4), 0),
        ("4", "Conv2d", (1, 2, 4, 4), 10),
    ]
    assert summary.flops == 2 * 1 * 4 * 9 * 8 * 8 + 2 * 4 * 2 * 1 * 4 * 4
    assert (summary.total_params, summary.trainable_params) == (58, 18)
    text = str(summary)
    for needle in ("Total params: 58", "Trainable params: 18", "Non-trainable params: 40",
                   "0 (Conv2d)", "(1, 2, 4, 4)", "2 x multiply-accumulates"):  # fmt: skip
        assert needle in text
    assert summary.line() == "Sequential: 2 conv layers, 0.0 M params, 0.0 GFLOPs at 1x8x8"


def brute_force_conv_flops(model: nn.Module, x: torch.Tensor) -> int:
    """Run the model for real and add 2 x multiply-accumulates of every (transposed) conv."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        kernel = module.kernel_size[0] * module.kernel_size[1]
        if isinstance(module, nn.ConvTranspose2d):  # every input pixel meets every weight once
            pixels = inputs[0].shape[-2] * inputs[0].shape[-1]
            total += 2 * module.in_channels * module.out_channels * kernel * pixels
        else:
            pixels = output.shape[-2] * output.shape[-1]
            per_pixel = module.in_channels // module.groups * module.out_channels * kernel
            total += 2 * per_pixel * pixels

    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    handles = [m.register_forward_hook(hook) for m in convs]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return total


@pytest.mark.parametrize(
    ("name", "options", "shape"),
    [("unet", {"base": 4}, (3, 64, 48)), ("mobilenet_unet", {}, (1, 32, 64))],
)
def test_flops_and_params_match_brute_force(name, options, shape):
    model = build_model(name, 3, shape[0], **options).eval()
    summary = summarize(model, shape)
    assert summary.flops == brute_force_conv_flops(model, torch.randn(1, *shape))
    assert summary.total_params == sum(p.numel() for p in model.parameters())
    assert summary.output_shape == (1, 3, *shape[1:])


def test_model_is_left_untouched():
    model = build_model("unet", 2, base=4).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summarize(model, (3, 32, 32))
    assert model.training
    for key, value in model.state_dict().items():
        assert value.device.type == "cpu" and torch.equal(value, before[key]), key


def test_classic_unet_line_with_hand_counted_flops():
    model = build_model("unet", 2)  # 31 M parameters; the summary runs on the meta device
    summary = summarize(model, (3, 512, 512))
    # by hand: multiply-accumulates per level i (side s = 512 / 2**i, width c = 64 * 2**i)
    macs = 3 * 64 * 9 * 512**2 + 64 * 64 * 9 * 512**2  # first level
    for i in range(1, 5):  # encoder levels and bottleneck: c/2 -> c -> c
        s, c = 512 // 2**i, 64 * 2**i
        macs += (c // 2) * c * 9 * s**2 + c * c * 9 * s**2
    for i in range(4):  # decoder: 2x2 transposed conv 2c -> c on the s/2 grid, 2c -> c -> c
        s, c = 512 // 2**i, 64 * 2**i
        macs += 2 * c * c * 4 * (s // 2) ** 2 + 2 * c * c * 9 * s**2 + c * c * 9 * s**2
    macs += 64 * 2 * 512**2  # 1x1 head
    assert summary.flops == 2 * macs
    assert (
        summary.line()
        == f"unet: 23 conv layers, 31.0 M params, {2 * macs / 1e9:.1f} GFLOPs at 3x512x512"
    )


# ---------------------------------------------------------------- command line


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["summary", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_builds_a_model_with_options(capsys):
    code, out, _ = run(capsys, "unet", "-o", "base=4", "--classes", "3", "--input", "1x32x32",
                       "--line")  # fmt: skip
    params = sum(p.numel() for p in build_model("unet", 3, 1, base=4).parameters())
    assert code == 0
    assert re.fullmatch(rf"unet: 23 conv layers, {params / 1e6:.1f} M params, [\d.]+ GFLOPs "
                        r"at 1x32x32\n", out)  # fmt: skip
    code, out, _ = run(capsys, "unet", "-o", "base=4", "--input", "3x32x32")
    params = sum(p.numel() for p in build_model("unet", 2, base=4).parameters())
    assert code == 0 and f"Total params: {params:,}" in out
    assert "Forward GFLOPs" in out and "head (Conv2d)" in out


def test_cli_valid_unet_defaults_to_the_next_legal_size(capsys):
    # depth 4: legal sides are 188 + 16 k; 508 < 512 <= 524
    code, out, _ = run(capsys, "unet", "-o", "base=4", "-o", "padding=valid", "--line")
    assert code == 0 and out.endswith("at 3x524x524\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("unet", "--input", "3x512"), "write CxHxW"),
        (("unet", "--input", "3x500x500"), "multiples of 16; nearest are 496x496 or 512x512"),
        (("unet3d",), "neither a model name nor an existing checkpoint"),
        (("unet", "-o", "colour=red"), "no option 'colour'"),
        (("unet", "-o", "base"), "not key=value"),
    ],
)
def test_cli_errors_are_clear(capsys, args, message):
    code, _, err = run(capsys, *args)
    assert code == 2 and message in err and "Traceback" not in err


def test_cli_reads_a_run_folder(capsys, tmp_path):
    model = build_model("unet", 3, 1, base=4)
    run_dir = tmp_path / "runs" / "demo"
    save_checkpoint({"model": model.spec, "state_dict": model.state_dict()},
                    run_dir / "checkpoints" / "best.pt")  # fmt: skip
    code, out, _ = run(capsys, str(run_dir), "--line")
    params = sum(p.numel() for p in model.parameters())
    assert code == 0
    assert re.fullmatch(rf"unet: 23 conv layers, {params / 1e6:.1f} M params, [\d.]+ GFLOPs "
                        r"at 1x512x512\n", out)  # fmt: skip
    code, _, err = run(capsys, str(run_dir), "--classes", "4")
    assert code == 2 and "apply to a model name" in err
    code, _, err = run(capsys, str(run_dir), "--input", "3x64x64")
    assert code == 2 and "takes 1" in err


def test_deep_supervision_heads_are_counted_apart_from_the_deployed_network():
    plain = build_model("unet", 3, 3, base=4, depth=3)
    with_heads = build_model("unet", 3, 3, base=4, depth=3, deep_supervision=2)
    summary = summarize(with_heads, (3, 32, 32))
    reference = summarize(plain, (3, 32, 32))
    # two 1x1 heads on the decoder stages above the last (8 and 16 channels at base 4, depth 3)
    head_params = (8 * 3 + 3) + (16 * 3 + 3)
    assert summary.training_only_params == head_params
    assert summary.total_params == reference.total_params
    assert summary.conv_layers == reference.conv_layers
    assert summary.flops == reference.flops  # the forward pass never runs the heads
    assert f"(+{head_params:,} in training-only heads)" in summary.line()
    assert "training-only" not in reference.line()
