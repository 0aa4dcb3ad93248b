"""Presets and models, ``--set`` of mappings, ``train --dry-run`` against what training does,
and run configs that re-run from any folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from test_engine_train import tiny_config, tiny_dataset

from unetlab.cli.main import main
from unetlab.engine.config import load_config
from unetlab.engine.dryrun import plan_run
from unetlab.engine.trainer import train
from unetlab.errors import UnetlabError


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return tiny_dataset(tmp_path_factory.mktemp("data") / "shapes")


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------- presets, models, --set


def test_another_model_drops_the_presets_model_options_and_says_so():
    preset_options = load_config(preset="camvid").model.options
    assert preset_options == {"base": 32, "depth": 4, "padding": "same"}
    cfg = load_config(preset="camvid", options={"model": {"name": "resnet50_unet"}})
    assert cfg.model.name == "resnet50_unet" and cfg.model.options == {}
    (note,) = cfg.notes
    assert "'resnet50_unet'" in note and "base=32, depth=4, padding='same'" in note
    assert "pretrained=None" in note  # what the new model takes
    # options given with the new model (same layer or above) are kept
    cfg = load_config(
        preset="camvid", options={"model": {"name": "mobilenet_unet"}},
        overrides=["model.options.level1_skip=false"],
    )  # fmt: skip
    assert cfg.model.options == {"level1_skip": False}
    # the same model name again keeps the options, and says nothing
    cfg = load_config(preset="camvid", options={"model": {"name": "unet"}})
    assert cfg.model.options == preset_options and cfg.notes == []


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["model.options={}"], {}),
        (["model.options=null"], {}),
        (["model.options={base: 8}"], {"base": 8}),  # a mapping replaces
        (["model.options.depth=3"], {"base": 32, "depth": 3, "padding": "same"}),  # a key merges
        (["model.options={}", "model.options.depth=3"], {"depth": 3}),
    ],
)
def test_set_of_a_mapping_replaces_it(overrides, expected):
    assert load_config(preset="camvid", overrides=overrides).model.options == expected


def test_loss_options_null_is_empty():
    assert load_config(overrides=["loss.options=null"]).loss.options == {}


# ---------------------------------------------------------------- --dry-run


def test_dry_run_resolves_what_the_data_says(data, tmp_path, capsys):
    code = main(["train", "--preset", "camvid", "--model", "resnet50_unet", "--data", str(data),
                 "--out-dir", str(tmp_path / "runs"), "--set", "data.patch_size=32",
                 "--dry-run"])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    resolved = yaml.safe_load(printed)
    assert resolved["data"]["num_classes"] == 3
    assert resolved["data"]["class_names"] == ["background", "circle", "square"]
    assert resolved["model"] == {"name": "resnet50_unet", "options": {}, "pretrained": None,
                                 "init_weights": None, "in_channels": 3}  # fmt: skip
    imagenet = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}  # RGB default
    assert resolved["data"]["normalization"] == imagenet
    assert resolved["data"]["root"] == str(data.resolve())
    assert resolved["name"] == "shapes-resnet50_unet"
    assert "# note: model 'resnet50_unet'" in printed
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing


BAD_CONFIGS = {
    "no dataset": ({"data": {"root": "does-not-exist"}}, "dataset folder not found"),
    "patch size": ({"data": {"patch_size": 30}}, "not a multiple of 4"),
    "model option": ({"model": {"options": {"base": 4, "depth": 2, "colour": 1}}},
                     "has no option 'colour'"),
    "class names": ({"data": {"class_names": ["a", "b"]}}, "has 2 names but there are 3"),
    "binary loss": ({"loss": {"name": "bce"}}, "is for binary masks"),
    "freeze": ({"train": {"freeze_encoder_epochs": 1}}, "has none"),
    "batch": ({"data": {"batch_size": 9}}, "not one full batch of 9"),
    "best metric": ({"train": {"best_metric": "iou_horse"}}, "is not measured by this run"),
    "init weights": ({"model": {"init_weights": "missing.pt"}}, "initial weights file not found"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_dry_run_fails_where_training_fails_with_the_same_error(case, data, tmp_path):
    """The reference is training itself: the same config, the same UnetlabError."""
    sections, expected = BAD_CONFIGS[case]
    cfg = tiny_config(data, tmp_path, **sections)
    with pytest.raises(UnetlabError) as planned:
        plan_run(cfg)
    with pytest.raises(UnetlabError) as trained:
        train(cfg)
    assert expected in planned.value.message
    assert planned.value.message == trained.value.message


def test_dry_run_cli_exits_2_on_a_config_that_cannot_train(data, capsys):
    code = main(["train", "--preset", "demo", "--data", str(data), "--set",
                 "data.patch_size=60", "--dry-run"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "not a multiple of 8" in err and "Traceback" not in err


def test_dry_run_of_a_good_config_passes_and_writes_nothing(data, tmp_path):
    plan = plan_run(tiny_config(data, tmp_path / "runs"))
    assert plan.run_dir == tmp_path / "runs" / "tiny" and not plan.run_dir.exists()
    assert plan.train_images == 8 and plan.val_images == 4
    assert plan.config.model.in_channels == 3 and plan.config.data.num_classes == 3


# ---------------------------------------------------------------- portable run configs


def test_saved_config_reruns_from_another_folder(data, tmp_path, monkeypatch, capsys):
    first = tmp_path / "first"
    first.mkdir()
    relative_data = Path("data-link")
    (first / relative_data).symlink_to(data, target_is_directory=True)
    monkeypatch.chdir(first)
    cfg = tiny_config(relative_data, Path("runs"), train={"epochs": 1, "device": "cpu",
                                                           "num_predictions": 0})  # fmt: skip
    cfg.name = None  # the default name, <dataset>-<model>
    result = train(cfg)
    run = first / "runs" / "shapes-unet"  # named after the dataset folder the link points to
    assert result.run_dir.resolve() == run
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["root"] == str(data.resolve())
    assert saved["name"] == "shapes-unet" and saved["out_dir"] == str(run.parent)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["train", str(run / "config.yaml")]) == 0
    again = first / "runs" / "shapes-unet-2"  # beside the first run, never into it
    assert (again / "checkpoints" / "last.pt").is_file()
    assert yaml.safe_load((again / "config.yaml").read_text())["name"] == "shapes-unet-2"
    assert not list(elsewhere.iterdir())
    assert load_config(run / "config.yaml").data.root == saved["data"]["root"]
