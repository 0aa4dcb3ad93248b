"""The model family: registry, shapes, gradients, size rules, encoders, padding arithmetic.

Generic checks are written once in :class:`ModelTester`; each architecture is a subclass that
states its options, test sizes and size rule (SMP's BaseModelTester pattern). Encoder models are
full width, so they run few, small (32-64 px) forwards.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unetlab.errors import UnetlabError
from unetlab.models import (
    SegmentationModel,
    UNet,
    build_model,
    check_size,
    crop_to,
    is_valid_input_size,
    list_models,
    model_options,
    pad_for_valid,
    pad_to_multiple,
    valid_input_size,
    valid_output_size,
)
from unetlab.models.blocks import center_crop
from unetlab.models.encoders import ENCODERS, build_encoder


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class ModelTester:
    """Checks every architecture must pass; subclasses fill in the class attributes."""

    name: str
    options: dict = {}  # noqa: RUF012  (read-only per subclass)
    sizes: tuple[tuple[int, int], ...] = ((32, 32), (64, 48))
    size_multiple: int = 16
    bad_size: tuple[int, int] = (40, 40)  # not a legal input size
    bad_size_message = "multiples of 16"

    def build(self, num_classes: int = 2, in_channels: int = 3) -> torch.nn.Module:
        return build_model(self.name, num_classes, in_channels, **self.options)

    def expected_size(self, height: int, width: int) -> tuple[int, int]:
        return height, width

    @pytest.fixture(scope="class")
    def model(self) -> torch.nn.Module:
        torch.manual_seed(0)
        return self.build()

    def test_registry_and_spec(self, model):
        assert self.name in list_models()
        assert isinstance(model, SegmentationModel)
        assert model.size_multiple == self.size_multiple
        assert model.spec == {
            "name": self.name,
            "num_classes": 2,
            "in_channels": 3,
            "options": self.options,
        }

    def test_forward_shapes(self, model):
        model.eval()
        with torch.no_grad():
            for height, width in self.sizes:
                out = model(torch.randn(2, 3, height, width))
                assert out.shape == (2, 2, *self.expected_size(height, width))
                assert torch.isfinite(out).all()

    def test_backward_gives_finite_grads_everywhere(self, model):
        model.train()
        height, width = self.sizes[0]
        logits = model(torch.randn(2, 3, height, width))
        target = torch.randint(0, 2, (2, *logits.shape[-2:]))
        F.cross_entropy(logits, target).backward()
        for name, param in model.named_parameters():
            assert param.grad is not None, f"{name} got no gradient"
            assert torch.isfinite(param.grad).all(), name
        model.zero_grad(set_to_none=True)

    @pytest.mark.parametrize(("in_channels", "num_classes"), [(1, 1), (3, 5)])
    def test_channels_and_classes(self, in_channels, num_classes):
        model = self.build(num_classes, in_channels).eval()
        height, width = self.sizes[0]
        with torch.no_grad():
            out = model(torch.randn(1, in_channels, height, width))
        assert out.shape == (1, num_classes, *self.expected_size(height, width))

    def test_illegal_size_and_channels_are_clear_errors(self, model):
        with pytest.raises(UnetlabError, match=self.bad_size_message):
            model(torch.randn(1, 3, *self.bad_size))
        with pytest.raises(UnetlabError, match="3 x H x W"):
            model(torch.randn(1, 4, *self.sizes[0]))


class TestUNet(ModelTester):
    name = "unet"
    options = {"base": 4}  # noqa: RUF012


class TestUNetBilinearDropout(ModelTester):
    name = "unet"
    options = {"base": 4, "depth": 3, "up": "bilinear", "batch_norm": False, "dropout": 0.5}  # noqa: RUF012
    sizes = ((16, 16), (32, 48))
    size_multiple = 8
    bad_size = (16, 20)
    bad_size_message = "multiples of 8"

    def test_dropout_only_in_training(self, model):
        x = torch.randn(1, 3, 16, 16)
        model.train()
        assert not torch.equal(model(x), model(x))
        model.eval()
        assert torch.equal(model(x), model(x))


class TestUNetValid(ModelTester):
    name = "unet"
    options = {"base": 4, "depth": 2, "padding": "valid"}  # noqa: RUF012
    # by hand, depth 2: 60 -4 56 /2 28 -4 24 /2 12 -4 8, x2 16 -4 12, x2 24 -4 20
    #                   76 -4 72 /2 36 -4 32 /2 16 -4 12, x2 24 -4 20, x2 40 -4 36
    #                   44 -4 40 /2 20 -4 16 /2 8 -4 4, x2 8 -4 4, x2 8 -4 4
    sizes = ((44, 44), (60, 76))
    outputs = {44: 4, 60: 20, 76: 36}  # noqa: RUF012
    size_multiple = 4
    bad_size = (62, 60)
    bad_size_message = "not a legal input side"

    def expected_size(self, height, width):
        return self.outputs[height], self.outputs[width]

    def test_output_size_method(self, model):
        assert model.output_size(60, 76) == (20, 36)


class EncoderModelTester(ModelTester):
    """Encoder models also expose their encoder's levels.

    ``levels``: channels and strides of the five levels (torchvision's structures) and the
    parameter count of torchvision's model without its classifier (``num_params`` in
    torchvision's weight tables minus the classifier's).
    """

    levels: tuple[tuple[int, ...], tuple[int, ...], int]

    def test_encoder_levels_and_parameter_count(self, model):
        channels, strides, params = self.levels
        encoder = model.encoder.eval()
        assert n_params(encoder) == params
        with torch.no_grad():
            levels = encoder(torch.randn(1, 3, 64, 96))
        depth = encoder.depth
        assert [tuple(f.shape) for f in levels] == [
            (1, c, 64 // s, 96 // s) for c, s in zip(channels[:depth], strides[:depth], strict=True)
        ]


class TestVGG16UNet(EncoderModelTester):
    name = "vgg16_unet"
    # 138,357,544 - classifier 123,642,856
    levels = ((64, 128, 256, 512, 512), (1, 2, 4, 8, 16), 14_714_688)


class TestResNet50UNet(EncoderModelTester):
    name = "resnet50_unet"
    sizes = ((32, 32), (64, 32))
    size_multiple = 32
    bad_size = (48, 64)
    bad_size_message = "multiples of 32"
    # 25,557,032 - fc 2,049,000
    levels = ((64, 256, 512, 1024, 2048), (2, 4, 8, 16, 32), 23_508_032)


class TestMobileNetUNet(EncoderModelTester):
    name = "mobilenet_unet"
    options = {"level1_skip": False}  # noqa: RUF012
    # the Keras decoder starts at stride 16, so the encoder stops there (features 0..13).
    # By hand (conv weights + 2 per BN channel; a t=6 block in->out has 6in^2 + 78in + 6in*out
    # + 2out): stem 928, block 1 896, then 5136 + 8832 + 10000 + 2*14848 + 21056 + 3*54272
    # + 66624 + 2*118272 = 542,528
    levels = ((16, 24, 32, 96), (2, 4, 8, 16), 542_528)

    def test_level1_skip_adds_one_concatenated_level(self, model):
        with_skip = build_model("mobilenet_unet", 2)
        # the 64-channel 3x3 conv of the last stage sees 16 more input channels (level 1)
        assert n_params(with_skip) - n_params(model) == 16 * 64 * 3 * 3


# ---------------------------------------------------------------- registry and classic U-Net


def test_registry_lists_the_four_models_and_rejects_unknown_names_and_options():
    assert {"unet", "vgg16_unet", "resnet50_unet", "mobilenet_unet"} <= set(list_models())
    with pytest.raises(UnetlabError, match=r"(?s)unknown model 'unet3d'.*mobilenet_unet"):
        build_model("unet3d", 2)
    with pytest.raises(UnetlabError, match=r"(?s)no option 'width'.*base=64"):
        build_model("unet", 2, width=32)
    with pytest.raises(UnetlabError, match="padding='full'"):
        build_model("unet", 2, padding="full")
    with pytest.raises(UnetlabError, match="num_classes"):
        build_model("unet", 0)
    assert model_options("unet")["depth"] == 4


def test_command_line_strings_are_converted_and_stored_typed():
    model = build_model("unet", 2, base="4", depth="2", batch_norm="false")
    assert model.spec["options"] == {"base": 4, "depth": 2, "batch_norm": False}
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


@pytest.fixture(scope="module")
def full_unet() -> torch.nn.Module:
    return build_model("unet", 2)  # built, never run forward (31 M parameters)


def test_classic_unet_has_the_reference_parameter_count(full_unet):
    # milesial/Pytorch-UNet UNet(n_channels=3, n_classes=2, bilinear=False)
    assert n_params(full_unet) == 31_037_698
    widths = sorted({m.out_channels for m in full_unet.modules() if isinstance(m, torch.nn.Conv2d)})
    assert widths == [2, 64, 128, 256, 512, 1024]


def test_he_initialisation(full_unet):
    conv = full_unet.down[4][3]  # 1024 -> 1024, fan_in = 1024 * 9
    assert conv.weight.std().item() == pytest.approx((2 / (1024 * 9)) ** 0.5, rel=0.02)


def test_valid_unet_maps_572_to_388_like_the_paper():
    model = UNet(2, base=1, padding="valid").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 572, 572)).shape[-2:] == (388, 388)


# ---------------------------------------------------------------- encoders


def test_encoder_registry_and_full_depth_mobilenet():
    encoder = build_encoder("mobilenet_v2")
    # 3,504,872 - classifier 1,281,000 (torchvision mobilenet_v2)
    assert n_params(encoder) == 2_223_872
    assert encoder.channels == (16, 24, 32, 96, 1280) and encoder.output_stride == 32
    assert set(ENCODERS) == {"vgg16", "resnet50", "mobilenet_v2"}
    with pytest.raises(UnetlabError, match="unknown encoder"):
        build_encoder("vgg19")


# ---------------------------------------------------------------- size arithmetic and padding


def simulate_valid_side(size: int, depth: int) -> int | None:
    """Brute force: follow one side through a valid U-Net op by op (None: impossible)."""
    skips = []
    for _ in range(depth):
        size -= 4  # two unpadded 3x3 convs
        if size < 2 or size % 2:  # the paper: every 2x2 pooling must see an even size
            return None
        skips.append(size)
        size //= 2
    size -= 4  # bottleneck
    if size < 1:
        return None
    for skip in reversed(skips):
        size *= 2
        if skip < size:  # the skip must cover the upsampled map
            return None
        size -= 4
        if size < 1:
            return None
    return size


def test_valid_arithmetic_matches_brute_force():
    assert valid_output_size(572, 4) == 388 and valid_input_size(388, 4) == 572
    # by hand, depth 4: 188 -4 184 /2 92 -4 88 /2 44 -4 40 /2 20 -4 16 /2 8 -4 4,
    # then x2 -4 four times: 8-4=4 each time -> 4; 172 fails (18 -4 = 14 /2 = 7 -4 = 3, x2 6-4=2,
    # x2 4-4=0), so 188 is the smallest legal side
    assert valid_output_size(188, 4) == 4 and valid_input_size(1, 4) == 188
    for depth in range(1, 5):
        outputs = {s: simulate_valid_side(s, depth) for s in range(1, 400)}
        for size, out in outputs.items():
            assert is_valid_input_size(size, depth) == (out is not None), (size, depth)
            if out is not None:
                assert valid_output_size(size, depth) == out
        for wanted in range(1, 120):
            smallest = min(s for s, o in outputs.items() if o is not None and o >= wanted)
            assert valid_input_size(wanted, depth) == smallest, (wanted, depth)


def test_illegal_valid_size_names_the_nearest_legal_ones():
    with pytest.raises(UnetlabError, match="nearest legal sides are 556 or 572"):
        valid_output_size(570, 4)


def test_check_size_names_the_image_and_nearest_multiples():
    check_size(512, 384, 16)
    with pytest.raises(UnetlabError, match=r"500x375.*496x368 or 512x384") as info:
        check_size(500, 375, 16, path="data/img_7.png")
    assert "data/img_7.png" in str(info.value)


@pytest.mark.parametrize(
    ("height", "width", "multiple", "numpy_mode"),
    [(37, 50, 16, "reflect"), (5, 3, 16, "edge")],  # 3 px too short to mirror 13 px: replicate
)
def test_pad_to_multiple_mirrors_like_numpy_and_crops_back(height, width, multiple, numpy_mode):
    image = torch.randn(2, 3, height, width)
    padded, pads = pad_to_multiple(image, multiple)
    assert padded.shape[-2] % multiple == 0 and padded.shape[-1] % multiple == 0
    left, right, top, bottom = pads
    expected = np.pad(image.numpy(), ((0, 0), (0, 0), (top, bottom), (left, right)), numpy_mode)
    np.testing.assert_array_equal(padded.numpy(), expected)
    assert abs(top - bottom) <= 1 and abs(left - right) <= 1  # the image stays centred
    assert torch.equal(crop_to(padded, pads), image)
    assert torch.equal(crop_to(padded, (height, width)), center_crop(padded, height, width))
    mask = (image[0, 0] > 0).to(torch.uint8)  # a 2-D integer mask pads the same way
    assert torch.equal(pad_to_multiple(mask, multiple)[0], (padded[0, 0] > 0).to(torch.uint8))


@pytest.mark.parametrize(("height", "width", "depth"), [(37, 53, 2), (100, 64, 4)])
def test_pad_for_valid_output_covers_the_image_exactly(height, width, depth):
    image = torch.arange(height * width, dtype=torch.float32).reshape(1, 1, height, width)
    padded, pads = pad_for_valid(image, depth)
    assert all(is_valid_input_size(s, depth) for s in padded.shape[-2:])
    out_h, out_w = (valid_output_size(s, depth) for s in padded.shape[-2:])
    # a valid network's output pixel sees the input pixel at the centre of its window: the
    # output is the centre crop of the input (every unpadded conv trims both sides alike)
    output = center_crop(padded, out_h, out_w)
    assert torch.equal(crop_to(output, pads), image)
