"""Pretrained encoder loading from torchvision-layout state dicts (no network).

The torchvision key layouts are written out here independently, from torchvision's model
definitions (VGG16 configuration "D", ResNet-50 bottlenecks, MobileNetV2's Table 2), not
from unetlab's encoders.
"""

from __future__ import annotations

import collections

import pytest
import torch

from unetlab.engine.checkpoint import save_checkpoint
from unetlab.errors import UnetlabError
from unetlab.models import build_model, load_encoder_weights
from unetlab.models import pretrained as pretrained_module
from unetlab.models.encoders import MobileNetV2Encoder, ResNet50Encoder, VGG16Encoder
from unetlab.models.pretrained import cache_dir, download


def bn(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    shapes = {f"{prefix}.{k}": (channels,) for k in ("weight", "bias", "running_mean")}
    return {**shapes, f"{prefix}.running_var": (channels,), f"{prefix}.num_batches_tracked": ()}


def vgg16_layout() -> dict[str, tuple[int, ...]]:
    """torchvision vgg16: features.N convs (N skips ReLUs and pools) + classifier.{0,3,6}."""
    convs = {0: (64, 3), 2: (64, 64), 5: (128, 64), 7: (128, 128), 10: (256, 128),
             12: (256, 256), 14: (256, 256), 17: (512, 256), 19: (512, 512), 21: (512, 512),
             24: (512, 512), 26: (512, 512), 28: (512, 512)}  # fmt: skip
    shapes: dict[str, tuple[int, ...]] = {}
    for index, (out, inp) in convs.items():
        shapes[f"features.{index}.weight"] = (out, inp, 3, 3)
        shapes[f"features.{index}.bias"] = (out,)
    # the classifier is never loaded; tiny stand-ins keep the file small (real: 4096x25088 ...)
    for index in (0, 3, 6):
        shapes[f"classifier.{index}.weight"] = (4, 4)
        shapes[f"classifier.{index}.bias"] = (4,)
    return shapes


def mobilenet_v2_layout() -> dict[str, tuple[int, ...]]:
    """torchvision mobilenet_v2 (width 1.0): stem, 17 inverted residuals, 1x1 to 1280."""
    shapes = {"features.0.0.weight": (32, 3, 3, 3), **bn("features.0.1", 32)}
    index, channels = 1, 32
    for t, c, n, _stride in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                             (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)):  # fmt: skip
        for _ in range(n):
            hidden, p = channels * t, f"features.{index}.conv"
            parts = []
            if t != 1:
                parts.append(((hidden, channels, 1, 1), hidden))
            parts.append(((hidden, 1, 3, 3), hidden))  # depthwise
            for j, (weight, norm) in enumerate(parts):
                shapes[f"{p}.{j}.0.weight"] = weight
                shapes.update(bn(f"{p}.{j}.1", norm))
            j = len(parts)
            shapes[f"{p}.{j}.weight"] = (c, hidden, 1, 1)
            shapes.update(bn(f"{p}.{j + 1}", c))
            index, channels = index + 1, c
    shapes["features.18.0.weight"] = (1280, 320, 1, 1)
    shapes.update(bn("features.18.1", 1280))
    shapes["classifier.1.weight"] = (1000, 1280)
    shapes["classifier.1.bias"] = (1000,)
    return shapes


def resnet50_layout() -> dict[str, tuple[int, ...]]:
    """torchvision resnet50 (v1.5) without fc."""
    shapes = {"conv1.weight": (64, 3, 7, 7), **bn("bn1", 64)}
    channels = 64
    for layer, (planes, blocks) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3)), start=1):
        for block in range(blocks):
            p = f"layer{layer}.{block}"
            shapes[f"{p}.conv1.weight"] = (planes, channels, 1, 1)
            shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            shapes[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
            for i, c in ((1, planes), (2, planes), (3, planes * 4)):
                shapes.update(bn(f"{p}.bn{i}", c))
            if block == 0:
                shapes[f"{p}.downsample.0.weight"] = (planes * 4, channels, 1, 1)
                shapes.update(bn(f"{p}.downsample.1", planes * 4))
            channels = planes * 4
    return shapes


def random_state(layout: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    return {
        k: torch.tensor(7) if k.endswith("num_batches_tracked") else torch.randn(shape)
        for k, shape in layout.items()
    }


@pytest.fixture(scope="module")
def vgg16_file(tmp_path_factory):
    state = random_state(vgg16_layout())
    path = tmp_path_factory.mktemp("weights") / "vgg16-397923af.pth"
    torch.save(state, path)
    return path, state


@pytest.fixture(scope="module")
def mobilenet_file(tmp_path_factory):
    state = random_state(mobilenet_v2_layout())
    path = tmp_path_factory.mktemp("weights") / "mobilenet_v2-b0353104.pth"
    torch.save(state, path)
    return path, state


def assert_loaded(encoder: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    own = encoder.state_dict()
    for key, value in own.items():
        assert torch.equal(value, state[key]), key


def test_vgg16_torchvision_weights_load_from_a_path(vgg16_file):
    path, state = vgg16_file
    encoder = VGG16Encoder()
    report = load_encoder_weights(encoder, str(path))
    assert_loaded(encoder, state)
    assert len(report.loaded) == 26 and report.encoder_tensors == 26 and report.complete
    assert sorted(report.ignored) == sorted(k for k in state if k.startswith("classifier."))
    assert report.missing == report.unexpected == report.mismatched == []
    text = str(report)
    assert "loaded:         26 of 26" in text and "6 tensors the encoder does not use" in text


def test_model_option_pretrained_takes_a_file_url(vgg16_file):
    path, state = vgg16_file
    model = build_model("vgg16_unet", 2, pretrained=path.as_uri())
    assert_loaded(model.encoder, state)
    assert model.pretrained_report.complete
    assert "pretrained" not in model.spec["options"]  # the weights now live in the state dict


def test_imagenet_means_torchvision_url_and_cut_levels_are_ignored(mobilenet_file, monkeypatch):
    path, state = mobilenet_file
    urls = []
    monkeypatch.setattr(pretrained_module, "download", lambda url: urls.append(url) or path)
    model = build_model("mobilenet_unet", 2, pretrained="imagenet")
    assert urls == ["https://download.pytorch.org/models/mobilenet_v2-b0353104.pth"]
    assert_loaded(model.encoder, state)  # features 0..13: the encoder stops at stride 16
    report = model.pretrained_report
    assert report.complete and not report.unexpected
    assert {k.split(".")[1] for k in report.ignored if k.startswith("features.")} == {
        "14", "15", "16", "17", "18"
    }  # fmt: skip


@pytest.mark.parametrize("in_channels", [1, 4])
def test_first_conv_is_adapted_to_other_channel_counts(mobilenet_file, in_channels):
    path, state = mobilenet_file
    encoder = MobileNetV2Encoder(in_channels=in_channels, depth=1)
    report = load_encoder_weights(encoder, path)
    rgb = state["features.0.0.weight"]
    got = encoder.state_dict()["features.0.0.weight"]
    if in_channels == 1:  # segmentation_models.pytorch: the sum of the RGB filters
        expected = rgb[:, 0:1] + rgb[:, 1:2] + rgb[:, 2:3]
    else:  # mean filter on each channel, scaled so that 4 equal channels give the RGB response
        expected = rgb.mean(dim=1, keepdim=True).expand(-1, 4, -1, -1) * 3 / 4
    torch.testing.assert_close(got, expected)
    assert report.adapted == ["features.0.0.weight"] and report.complete


def test_resnet50_encoder_has_torchvision_keys_and_shapes():
    encoder = ResNet50Encoder()
    own = {k: tuple(v.shape) for k, v in encoder.state_dict().items()}
    assert own == resnet50_layout()
    assert "fc." in encoder.unused_prefixes()


def test_report_lists_missing_unexpected_and_mismatched_keys(mobilenet_file, tmp_path):
    _, state = mobilenet_file
    state = dict(state)
    del state["features.2.conv.1.0.weight"]
    state["features.3.conv.2.weight"] = torch.randn(24, 144, 3, 3)
    state["features.99.weight"] = torch.randn(3)
    state["extra.bias"] = torch.randn(3)
    path = tmp_path / "edited.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)  # DDP-wrapped
    encoder = MobileNetV2Encoder()
    before = encoder.state_dict()["features.3.conv.2.weight"].clone()
    report = load_encoder_weights(encoder, path)
    assert report.missing == ["features.2.conv.1.0.weight"]
    assert report.mismatched == [("features.3.conv.2.weight", (24, 144, 3, 3), (24, 144, 1, 1))]
    assert sorted(report.unexpected) == ["extra.bias", "features.99.weight"]
    assert not report.complete
    assert torch.equal(encoder.state_dict()["features.3.conv.2.weight"], before)
    assert torch.equal(encoder.state_dict()["features.4.conv.2.weight"], state[
        "features.4.conv.2.weight"])  # fmt: skip
    text = str(report)
    for needle in (
        "missing:        1",
        "unexpected:     2",
        "features.99.weight",
        "(24, 144, 3, 3)",
    ):
        assert needle in text


def test_another_architectures_weights_are_refused(mobilenet_file):
    path, _ = mobilenet_file
    with pytest.raises(
        UnetlabError, match=r"none of the \d+ tensors in the file fit encoder 'vgg16'"
    ):
        load_encoder_weights(VGG16Encoder(depth=1), path)


def test_encoder_weights_from_a_unetlab_checkpoint(tmp_path):
    source = build_model("mobilenet_unet", 2)
    path = save_checkpoint(
        {"model": source.spec, "state_dict": source.state_dict()}, tmp_path / "b.pt"
    )
    target = build_model("mobilenet_unet", 2)
    report = load_encoder_weights(target, path)
    assert_loaded(target.encoder, source.encoder.state_dict())
    assert "head.weight" in report.ignored and report.complete
    assert not torch.equal(target.head.weight, source.head.weight)


def test_download_caches_atomically(tmp_path, monkeypatch):
    monkeypatch.setenv("UNETLAB_CACHE", str(tmp_path / "cache"))
    assert cache_dir() == tmp_path / "cache" / "weights"
    source = tmp_path / "w.pth"
    source.write_bytes(b"0123456789" * 1000)
    cached = download(source.as_uri())
    assert cached == cache_dir() / "w.pth" and cached.read_bytes() == source.read_bytes()
    source.unlink()
    assert download(source.as_uri()) == cached  # served from the cache
    with pytest.raises(UnetlabError, match="could not download"):
        download((tmp_path / "absent.pth").as_uri())
    assert sorted(p.name for p in cache_dir().iterdir()) == ["w.pth"]  # no partial files


class Payload:
    pass


def test_unusable_sources_are_clear_errors(tmp_path):
    encoder = VGG16Encoder(depth=1)
    with pytest.raises(UnetlabError, match="not found"):
        load_encoder_weights(encoder, tmp_path / "missing.pth")
    with pytest.raises(UnetlabError, match="unsupported URL scheme 'ftp'"):
        load_encoder_weights(encoder, "ftp://example.org/w.pth")
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"weights": Payload(), "n": collections.OrderedDict()}, unsafe)
    with pytest.raises(UnetlabError, match="refused"):
        load_encoder_weights(encoder, unsafe)
    with pytest.raises(UnetlabError, match="no pretrained encoder"):
        load_encoder_weights(build_model("unet", 2, base=4), unsafe)


# ---------------------------------------------------------------- whole-model initial weights


def _plain_unet_state(seed: int = 7):
    """A state dict written by plain torch (``torch.save(model.state_dict())``), as another
    project or an older script would, of a model built without unetlab's registry."""
    from unetlab.models.unet import UNet

    torch.manual_seed(seed)
    state = UNet(num_classes=3, in_channels=3, base=4, depth=2).state_dict()
    return state


def test_init_weights_loads_a_plain_state_dict_with_a_key_report(tmp_path):
    from unetlab.models import load_model_weights

    state = _plain_unet_state()
    kept_out = "head.bias"
    edited = {k: v for k, v in state.items() if k != kept_out}
    edited["old.classifier.weight"] = torch.randn(2, 2)
    path = tmp_path / "weights.pth"
    torch.save(edited, path)
    model = build_model("unet", 3, base=4, depth=2)
    before = model.state_dict()[kept_out].clone()
    report = load_model_weights(model, path)
    loaded = model.state_dict()
    for key, value in state.items():
        if key != kept_out:
            assert torch.equal(loaded[key], value), key
    assert torch.equal(loaded[kept_out], before)  # missing: keeps its fresh value
    assert report.missing == [kept_out] and report.unexpected == ["old.classifier.weight"]
    text = str(report)
    assert text.startswith(f"initial weights for model 'unet' from {path}")
    assert f"loaded:         {len(state) - 1} of {len(state)} model tensors" in text


def test_init_weights_in_a_config_reaches_the_trained_model(tmp_path):
    from test_engine_train import tiny_config, tiny_dataset

    from unetlab.engine.builders import build_network

    data = tiny_dataset(tmp_path / "data")
    state = _plain_unet_state()
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)  # DDP, nested
    cfg = tiny_config(data, tmp_path, model={"options": {"base": 4, "depth": 2},
                                             "init_weights": str(path)})  # fmt: skip
    cfg.data.num_classes, cfg.model.in_channels = 3, 3
    model = build_network(cfg, pretrained=True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert model.init_report.complete
    fresh = build_network(cfg, pretrained=False)  # resuming: the run's own weights, not these
    assert fresh.init_report is None


def test_init_weights_that_fit_nothing_or_run_code_are_refused(tmp_path):
    from unetlab.models import load_model_weights

    path = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.randn(2, 2)}, path)
    with pytest.raises(UnetlabError, match="none of the 1 tensors in the file fit model 'unet'"):
        load_model_weights(build_model("unet", 2, base=4, depth=2), path)

    class Payload:
        def __reduce__(self):
            return (print, ("ran",))

    evil = tmp_path / "evil.pth"
    torch.save({"x": Payload()}, evil)
    with pytest.raises(UnetlabError, match="refused to load"):
        load_model_weights(build_model("unet", 2, base=4, depth=2), evil)
