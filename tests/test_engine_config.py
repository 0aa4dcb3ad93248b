"""Run configuration: layers, overrides, presets, readable errors, YAML round trip."""

from __future__ import annotations

import math

import pytest
import yaml

from unetlab.engine.config import RunConfig, deep_merge, load_config, parse_overrides
from unetlab.engine.schedule import lr_at
from unetlab.errors import UnetlabError
from unetlab.presets import get_preset, list_presets


def _error(**kwargs) -> str:
    with pytest.raises(UnetlabError) as info:
        load_config(**kwargs)
    return info.value.format()


def test_layers_later_wins(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("preset: isbi2012\noptim:\n  lr: 0.5\ntrain:\n  epochs: 7\n")
    cfg = load_config(path, options={"train": {"epochs": 9}}, overrides=["optim.lr=0.25"])
    assert cfg.optim.lr == 0.25  # --set beats the file
    assert cfg.train.epochs == 9  # an option beats the file
    assert cfg.data.repeat == get_preset("isbi2012")["data"]["repeat"] != 1  # from the preset
    assert cfg.optim.weight_decay == get_preset("isbi2012")["optim"]["weight_decay"]
    assert cfg.preset == "isbi2012"


def test_override_values_are_yaml():
    parsed = parse_overrides(["data.patch_size=[128, 96]", "train.early_stopping={patience: 3}",
                              "model.pretrained=null", "name=run1"])
    assert parsed == {"data": {"patch_size": [128, 96]}, "train": {"early_stopping":
                      {"patience": 3}}, "model": {"pretrained": None}, "name": "run1"}
    cfg = load_config(overrides=["data.patch_size=[128, 96]"])
    assert cfg.data.patch_hw == (128, 96)


def test_deep_merge_keeps_siblings():
    merged = deep_merge({"a": {"b": 1, "c": 2}, "d": 1}, {"a": {"b": 5}})
    assert merged == {"a": {"b": 5, "c": 2}, "d": 1}


def test_unknown_field_in_yaml_names_file_field_and_choices(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  learning_rate: 0.1\n")
    text = _error(source=path)
    assert str(path) in text
    assert "optim.learning_rate" in text
    assert "lr" in text and "weight_decay" in text  # the valid names


def test_misspelt_section_suggests_the_right_one():
    text = _error(overrides=["data.augmnt.hflip=false"])
    assert "data.augmnt" in text and "did you mean 'augment'" in text


@pytest.mark.parametrize(
    ("override", "field", "shown"),
    [
        ("train.epochs=many", "train.epochs", "integer"),
        ("optim.name=adma", "optim.name", "'adam', 'adamw' or 'sgd'"),
        ("train.amp=yes", "train.amp", "'auto', 'off', 'bf16' or 'fp16'"),
        ("train.device=gpu", "train.device", "cuda:N"),
        ("train.best_metric=accuracy", "train.best_metric", "miou"),
        ("data.batch_size=0", "data.batch_size", "greater than or equal to 1"),
        ("loss.class_weights=maybe", "loss.class_weights", "'auto'"),
    ],
)
def test_wrong_values_name_field_and_choices(override, field, shown):
    text = _error(overrides=[override])
    assert f"'{field}'" in text
    assert shown in text
    assert "Traceback" not in text and "pydantic" not in text.lower()


def test_bad_preset_and_bad_override_syntax():
    text = _error(preset="isbi")
    assert "isbi" in text and "isbi2012" in text and "camvid" in text
    assert "section.field=value" in _error(overrides=["optim.lr"])


def test_yaml_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    assert "mapping" in _error(source=path)


@pytest.mark.parametrize("name", list_presets())
def test_presets_are_valid_configs(name):
    cfg = load_config(preset=name)
    assert cfg.preset == name
    assert cfg.model.name == "unet"


def test_config_yaml_round_trip(tmp_path):
    cfg = load_config(
        preset="camvid",
        overrides=["data.patch_size=[96, 128]", "loss.weight_map={w0: 5}", "optim.grad_clip=1"],
    )
    path = cfg.save(tmp_path / "config.yaml")
    again = load_config(path)
    assert again == cfg
    assert yaml.safe_load(path.read_text())["data"]["patch_size"] == [96, 128]
    assert isinstance(again, RunConfig)


def test_binary_convention():
    assert load_config(overrides=["loss.name=bce"]).binary
    assert not load_config().binary


class _Schedule:
    def __init__(self, name, **kw):
        self.name, self.step_size, self.gamma, self.power, self.min_lr = (
            name, kw.get("step_size", 2.0), kw.get("gamma", 0.1), kw.get("power", 0.9),
            kw.get("min_lr", 0.0),
        )


def test_schedules_against_hand_computed_values():
    cos = _Schedule("cosine", min_lr=0.1)
    assert lr_at(cos, 1.0, 0.0, 10, 0) == pytest.approx(1.0)
    assert lr_at(cos, 1.0, 5.0, 10, 0) == pytest.approx(0.55)  # halfway: mean of 1 and 0.1
    assert lr_at(cos, 1.0, 10.0, 10, 0) == pytest.approx(0.1)
    quarter = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4))
    assert lr_at(cos, 1.0, 2.5, 10, 0) == pytest.approx(quarter)
    step = _Schedule("step", step_size=2.0, gamma=0.5)
    assert [lr_at(step, 1.0, p, 10, 0) for p in (0, 1.9, 2.0, 4.5)] == [1.0, 1.0, 0.5, 0.25]
    poly = _Schedule("poly", power=2.0)
    assert lr_at(poly, 2.0, 5.0, 10, 0) == pytest.approx(2.0 * 0.25)
    # warm-up: linear to the peak over 2 epochs, then the cosine starts from its beginning
    assert lr_at(cos, 1.0, 1.0, 10, 2.0) == pytest.approx(0.5)
    assert lr_at(cos, 1.0, 2.0, 10, 2.0) == pytest.approx(1.0)
    assert lr_at(cos, 1.0, 6.0, 10, 2.0) == pytest.approx(0.55)
    assert lr_at(_Schedule("constant"), 0.3, 7.0, 10, 0) == 0.3
    # a time budget half used up: the decay is at least halfway, warm-up still counts epochs
    assert lr_at(cos, 1.0, 1.0, 10, 0, time_fraction=0.5) == pytest.approx(0.55)
    assert lr_at(cos, 1.0, 8.0, 10, 0, time_fraction=0.5) == lr_at(cos, 1.0, 8.0, 10, 0)
    assert lr_at(cos, 1.0, 1.0, 100, 2.0, time_fraction=0.9) == pytest.approx(0.5)
    assert lr_at(step, 1.0, 0.0, 10, 0, time_fraction=0.5) == 0.25  # 5 of 10 epochs: 2 drops


# ---------------------------------------------------------------- the command line


def test_cli_dry_run_prints_the_resolved_config(tmp_path, capsys):
    from unetlab.cli.main import main
    from unetlab.data import make_shapes_dataset

    data = make_shapes_dataset(tmp_path / "shapes", n_train=6, n_val=2, size=32, num_classes=2)
    code = main(["train", "--preset", "demo", "--data", str(data), "--epochs", "3",
                 "--batch-size", "5", "--set", "optim.lr=0.02", "--set", "data.patch_size=32",
                 "--dry-run"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert code == 0
    assert printed["data"]["root"] == str(data.resolve()) and printed["data"]["batch_size"] == 5
    assert printed["train"]["epochs"] == 3 and printed["optim"]["lr"] == 0.02
    preset_model = load_config(preset="demo").to_dict()["model"]
    assert printed["model"] == {**preset_model, "in_channels": 3}  # read from the images
    assert printed["data"]["num_classes"] == 2


def test_cli_config_error_is_one_paragraph_with_exit_code_2(tmp_path, capsys):
    from unetlab.cli.main import main

    path = tmp_path / "run.yaml"
    path.write_text("train:\n  epohcs: 3\n")
    assert main(["train", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: invalid run configuration")
    assert "train.epohcs" in err and "did you mean 'epochs'" in err and "Traceback" not in err


def test_cli_resume_refuses_a_preset(tmp_path, capsys):
    from unetlab.cli.main import main

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"")
    assert main(["train", "--resume", str(tmp_path), "--preset", "demo"]) == 2
    assert "--resume continues a run" in capsys.readouterr().err


@pytest.mark.parametrize("balance", [True, False])
def test_weight_map_class_balance_reaches_the_weights(balance):
    """``loss.weight_map.class_balance`` is passed to the weight map: one 2 x 2 object (class 1)
    in a 6 x 6 mask has no border term (fewer than two objects), so its weights are w_c alone:
    32 / 4 = 8 on the object with class balance, 1 without; background 1 either way."""
    import numpy as np

    from unetlab.engine.builders import weight_map_options
    from unetlab.losses.weight_map import unet_weight_map

    cfg = load_config(
        options={"data": {"root": "unused"}, "loss": {"name": "weighted_ce"}},
        overrides=[f"loss.weight_map.class_balance={str(balance).lower()}"],
    )
    mask = np.zeros((6, 6), np.uint8)
    mask[2:4, 2:4] = 1
    weights = unet_weight_map(mask, **weight_map_options(cfg))
    expected = np.where(mask == 1, 8.0 if balance else 1.0, 1.0)
    np.testing.assert_allclose(weights, expected)


def test_amp_off_survives_yaml():
    """YAML 1.1 reads a bare ``off`` as False; ``train.amp: off`` must still mean off."""
    for overrides in (["train.amp=off"], ["train.amp='off'"]):
        cfg = load_config(options={"data": {"root": "unused"}}, overrides=overrides)
        assert cfg.train.amp == "off"
    with pytest.raises(UnetlabError, match=r"train\.amp"):
        load_config(options={"data": {"root": "unused"}}, overrides=["train.amp=on"])
