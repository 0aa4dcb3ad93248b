"""Training options the end-to-end tests do not reach: each against what it must do to the run.

Optimisers against hand-computed first steps, the applied learning rate against the schedule
written out by hand, gradient clipping against the size of the update, stopping rules (time
limit, ``early_stopping.min_delta``, ``max_steps_per_epoch``) against the rows they leave,
bf16 autocast by the dtype the loss sees, TensorBoard by what reaches its writer, the presets
by building every piece they configure, ``train --name`` through the command line.
"""

from __future__ import annotations

import csv
import math
import sys
import types
from typing import ClassVar

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unetlab.cli.main import main
from unetlab.data import check_dataset
from unetlab.data.io import read_mask
from unetlab.engine import trainer as trainer_module
from unetlab.engine.builders import (
    build_criterion,
    build_network,
    build_optimizer,
    check_patch_size,
    resolve_data,
)
from unetlab.engine.checkpoint import load_checkpoint
from unetlab.engine.config import load_config
from unetlab.engine.trainer import train
from unetlab.errors import UnetlabError
from unetlab.presets import list_presets

from test_engine_train import tiny_config, tiny_dataset  # isort: skip


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("data") / "shapes")  # 8 train, 4 val, 32 px


def _rows(run_dir) -> list[dict[str, str]]:
    return list(csv.DictReader((run_dir / "metrics.csv").open()))


# ---------------------------------------------------------------- optimisers (no training)


class _TwoWeights(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([1.0, -2.0]))


def _first_step(overrides: list[str]) -> list[float]:
    """One optimizer step from w = (1, -2) with gradient (0.5, 0.25)."""
    model = _TwoWeights()
    optimizer = build_optimizer(load_config(overrides=overrides), model)
    model.w.grad = torch.tensor([0.5, 0.25])
    optimizer.step()
    return model.w.detach().tolist()


# lr 0.1, weight decay 0.1. Gradient with L2 decay: g + 0.1 w = (0.6, 0.05).
# sgd, momentum 0.5: the first step's buffer is that gradient; nesterov steps 1.5x it.
# adam: the first bias-corrected step is lr * sign(gradient with L2 decay).
# adamw: decay decoupled: w (1 - lr wd), then lr * sign(g).
@pytest.mark.parametrize(
    ("name", "extra", "expected"),
    [
        ("sgd", ["optim.nesterov=false"], [1 - 0.1 * 0.6, -2 - 0.1 * 0.05]),
        ("sgd", ["optim.nesterov=true"], [1 - 0.1 * 0.9, -2 - 0.1 * 0.075]),
        ("adam", [], [1 - 0.1, -2 - 0.1]),
        ("adamw", [], [1 * 0.99 - 0.1, -2 * 0.99 - 0.1]),
    ],
)
def test_optimisers_take_the_hand_computed_first_step(name, extra, expected):
    settings = [f"optim.name={name}", "optim.lr=0.1", "optim.weight_decay=0.1",
                "optim.momentum=0.5", *extra]
    assert _first_step(settings) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_nesterov_is_refused_for_adam(name):
    with pytest.raises(UnetlabError, match="nesterov applies to sgd only"):
        _first_step([f"optim.name={name}", "optim.nesterov=true"])


# ---------------------------------------------------------------- the learning rate applied


class _RecordingWriter:
    """Stands in for torch.utils.tensorboard.SummaryWriter (tensorboard is not a dependency)."""

    instances: ClassVar[list[_RecordingWriter]] = []

    def __init__(self, log_dir, purge_step=None):
        self.log_dir, self.purge_step = log_dir, purge_step
        self.scalars: dict[str, dict[int, float]] = {}
        self.closed = False
        _RecordingWriter.instances.append(self)

    def add_scalar(self, key, value, step):
        self.scalars.setdefault(key, {})[step] = value

    def close(self):
        self.closed = True


def test_applied_learning_rate_follows_the_schedule_and_rows_reach_tensorboard(
    data, tmp_path, monkeypatch
):
    applied: list[float] = []
    original = trainer_module.build_optimizer

    def recording_optimizer(cfg, model):
        optimizer = original(cfg, model)
        step = optimizer.step

        def recorded_step(*args, **kwargs):
            applied.append(optimizer.param_groups[0]["lr"])
            return step(*args, **kwargs)

        optimizer.step = recorded_step
        return optimizer

    monkeypatch.setattr(trainer_module, "build_optimizer", recording_optimizer)
    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = _RecordingWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    _RecordingWriter.instances.clear()

    # 2 epochs x 4 steps, lr 0.01, cosine to 0 after a 2-step (half-epoch) linear warm-up
    result = train(tiny_config(data, tmp_path, train={"num_predictions": 0}))

    progress = [step / 4 for step in range(1, 9)]  # epochs done after each step
    expected = [
        0.01 * p / 0.5 if p < 0.5 else 0.01 * 0.5 * (1 + math.cos(math.pi * (p - 0.5) / 1.5))
        for p in progress
    ]
    assert applied == pytest.approx(expected, rel=1e-9, abs=1e-12)
    rows = _rows(result.run_dir)
    assert [float(r["lr"]) for r in rows] == pytest.approx([expected[3], expected[7]], rel=1e-5)

    (writer,) = _RecordingWriter.instances
    assert writer.log_dir == str(result.run_dir / "tensorboard") and writer.closed
    assert writer.purge_step is None  # a new run: nothing to purge
    for column in ("lr", "train_loss", "val_loss", "miou", "pixel_acc", "iou_circle"):
        logged = writer.scalars[column]
        assert sorted(logged) == [4, 8], column  # at the global step that ended each epoch
        csv_values = [float(r[column]) for r in rows]
        assert [logged[4], logged[8]] == pytest.approx(csv_values, rel=1e-5), column
    assert "epoch" not in writer.scalars


# ---------------------------------------------------------------- clipping, steps per epoch


def test_grad_clip_bounds_the_update_and_max_steps_cut_the_epoch(data, tmp_path, monkeypatch):
    """One plain SGD step (no momentum, no decay, constant rate 1): the weights move by exactly
    lr x grad_clip in norm, since the raw gradient is far larger than the clip."""
    initial: list[dict[str, torch.Tensor]] = []
    original_enter = trainer_module.Trainer._enter_epoch

    def record(self, epoch):
        initial.append({n: p.detach().clone() for n, p in self.model.named_parameters()})
        original_enter(self, epoch)

    monkeypatch.setattr(trainer_module.Trainer, "_enter_epoch", record)
    result = train(tiny_config(data, tmp_path, overrides=(
        "optim.name=sgd", "optim.lr=1", "optim.momentum=0", "optim.weight_decay=0",
        "optim.grad_clip=0.01", "schedule.name=constant", "schedule.warmup_steps=0",
        "train.epochs=2", "train.max_steps_per_epoch=1", "train.num_predictions=0",
    )))
    assert result.global_step == 2  # 1 of the 4 steps of each epoch
    first, second = initial
    moved = math.sqrt(sum(float(((second[n] - first[n]) ** 2).sum()) for n in first))
    assert moved == pytest.approx(1.0 * 0.01, rel=1e-3)


# ---------------------------------------------------------------- stopping rules


def test_time_limit_stops_validates_and_anneals(data, tmp_path):
    """A budget used up by the first step: the run stops there, validates that epoch, saves it,
    and the step's rate is already the end of the decay (the clock is further than epochs)."""
    result = train(tiny_config(data, tmp_path, overrides=(
        "train.time_limit_minutes=1e-9", "schedule.warmup_steps=0", "schedule.min_lr=1e-4",
        "train.epochs=3", "train.num_predictions=0",
    )))
    assert (result.stopped, result.global_step, result.epochs) == ("time_limit", 1, 1)
    (row,) = _rows(result.run_dir)
    assert row["epoch"] == "1" and row["miou"] != ""  # validated though epoch 1 was cut short
    assert float(row["lr"]) == pytest.approx(1e-4)
    last = load_checkpoint(result.last_checkpoint)
    assert last["epoch"] == 1 and last["position"]["step_in_epoch"] == 0


def test_early_stopping_min_delta_ignores_small_improvements(data, tmp_path):
    """The train loss falls from epoch 1 to 2, by far less than min_delta 10: not an
    improvement, so with patience 1 the run stops after epoch 2 and epoch 1 stays best."""
    result = train(tiny_config(data, tmp_path, overrides=(
        "train.epochs=4", "train.best_metric=train_loss", "train.mode=min", "optim.lr=0.02",
        "train.early_stopping={patience: 1, min_delta: 10}", "train.num_predictions=0",
    )))
    losses = [float(r["train_loss"]) for r in _rows(result.run_dir)]
    assert result.stopped == "early_stopping" and result.epochs == 2
    assert losses[1] < losses[0]  # an improvement, smaller than min_delta
    assert load_checkpoint(result.best_checkpoint)["epoch"] == 1


# ---------------------------------------------------------------- mixed precision


def test_bf16_training_runs_the_model_in_bf16_and_keeps_fp32_weights(data, tmp_path, monkeypatch):
    seen: list[torch.dtype] = []
    original = trainer_module.build_criterion

    def recording_criterion(*args, **kwargs):
        loss = original(*args, **kwargs)
        forward = loss.forward

        def recorded(logits, target, weight=None):
            seen.append(logits.dtype)
            return forward(logits, target, weight)

        loss.forward = recorded
        return loss

    monkeypatch.setattr(trainer_module, "build_criterion", recording_criterion)
    result = train(tiny_config(data, tmp_path, overrides=(
        "train.amp=bf16", "train.epochs=1", "train.max_steps_per_epoch=2",
        "train.num_predictions=0",
    )))
    assert len(seen) == 2 + 4  # 2 training steps, 4 validation images
    assert set(seen) == {torch.bfloat16}
    last = load_checkpoint(result.last_checkpoint)
    weights = [v for v in last["state_dict"].values() if v.is_floating_point()]
    assert all(v.dtype == torch.float32 for v in weights)
    assert math.isfinite(result.metrics["train_loss"]) and 0 <= result.metrics["miou"] <= 1


# ---------------------------------------------------------------- class weights, presets


def test_auto_class_weights_are_median_frequency_of_the_training_masks(data):
    masks = [read_mask(data / "masks" / f"{i}.png") for i in
             (data / "splits" / "train.txt").read_text().split()]
    counts = np.bincount(np.concatenate([m.ravel() for m in masks]), minlength=256)[:3]
    hand = torch.tensor(np.median(counts) / counts, dtype=torch.float32)
    assert not torch.allclose(hand, torch.ones(3))  # the classes are imbalanced

    cfg = load_config(preset="camvid", overrides=[f"data.root={data}",  # class_weights: auto
                                                  "loss.class_weight_method=median"])
    report = check_dataset(data, None, ("train", "val"))
    criterion = build_criterion(cfg, report, 3)
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, generator=gen)
    target = torch.randint(0, 3, (2, 8, 8), generator=gen)
    target[0, 0] = 255
    expected = F.cross_entropy(logits, target, weight=hand, ignore_index=255)
    assert float(criterion(logits, target)) == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_builds_what_it_configures(name, data):
    """The preset's model accepts its options and its patch, its loss builds on real masks and
    trains a step, its augmentation produces the patch."""
    from unetlab.data.transforms import build_transform

    cfg = load_config(preset=name, overrides=[f"data.root={data}"])
    report = check_dataset(data, None, ("train", "val"))
    cfg, spec = resolve_data(cfg, report)
    model = build_network(cfg, pretrained=False)
    check_patch_size(model, cfg.data.patch_hw, cfg.model.name)
    criterion = build_criterion(cfg, report, spec.num_classes)
    optimizer = build_optimizer(cfg, model)

    image = np.zeros((40, 40, 3), np.uint8)
    mask = np.zeros((40, 40), np.uint8)
    mask[10:20, 10:30] = 1
    out = build_transform(cfg.data.augment, cfg.data.patch_hw, train=True)(image=image, mask=mask)
    assert out["image"].shape[:2] == out["mask"].shape == cfg.data.patch_hw

    side = 2 * int(model.size_multiple)  # batch norm needs more than 1 value at the bottom
    x = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(0))
    target = torch.zeros(1, side, side, dtype=torch.long)
    target[:, : side // 2] = 1
    weight = torch.ones(1, side, side) if cfg.loss.weight_map else None
    loss = criterion(model(x), target, weight=weight)
    before = [p.detach().clone() for p in model.parameters()]
    loss.backward()
    optimizer.step()
    assert math.isfinite(float(loss.detach()))
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))


# ---------------------------------------------------------------- command line


def test_cli_train_name_picks_the_folder_and_never_reuses_a_run(data, tmp_path, capsys):
    config = tiny_config(data, tmp_path / "runs", overrides=(
        "train.epochs=1", "train.max_steps_per_epoch=1", "train.num_predictions=0",
    )).save(tmp_path / "run.yaml")
    argv = ["train", str(config), "--name", "chosen"]
    assert main(argv) == 0, capsys.readouterr()
    run = tmp_path / "runs" / "chosen"
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 1
    assert not (tmp_path / "runs" / "tiny").exists()  # the config's own name lost to --name
    before = (run / "checkpoints" / "last.pt").read_bytes()
    capsys.readouterr()
    assert main(argv) == 0  # the same command again: a new run beside the first
    assert (tmp_path / "runs" / "chosen-2" / "checkpoints" / "last.pt").is_file()
    assert (run / "checkpoints" / "last.pt").read_bytes() == before
