"""The trainer end to end on tiny synthetic data: files, checkpoints, metrics, exact resume,
encoder freezing, NaN stop and the input checks.

Also the home of ``tiny_dataset`` / ``tiny_config``, which the other engine test files import.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from unetlab.data import make_shapes_dataset
from unetlab.engine import trainer as trainer_module
from unetlab.engine.checkpoint import load_checkpoint, model_from_checkpoint
from unetlab.engine.config import RunConfig, load_config
from unetlab.engine.evaluate import collect_confusion
from unetlab.engine.trainer import TrainingDiverged, train
from unetlab.errors import UnetlabError


def tiny_dataset(root: Path, n_train: int = 8, n_val: int = 4, num_classes: int = 3) -> Path:
    return make_shapes_dataset(root, n_train=n_train, n_val=n_val, size=32, seed=1,
                               num_classes=num_classes)


def tiny_config(
    data_root: Path, out: Path, overrides: tuple[str, ...] = (), **sections
) -> RunConfig:
    """A 2-epoch CPU run of a base-4 U-Net on 32 px images: seconds, not minutes."""
    base = {
        "name": "tiny",
        "out_dir": str(out),
        "data": {
            "root": str(data_root),
            "patch_size": 32,
            "batch_size": 2,
            "num_workers": 0,
            "augment": {"hflip": True, "vflip": True, "scale_range": [0.8, 1.2],
                        "brightness": 0.1, "contrast": 0.1},
        },
        "model": {"name": "unet", "options": {"base": 4, "depth": 2}},
        "optim": {"name": "adamw", "lr": 0.01},
        "schedule": {"name": "cosine", "warmup_steps": 2},
        "train": {"epochs": 2, "device": "cpu", "log_every": 2, "num_predictions": 2},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return load_config(base, overrides=overrides)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: these tiny models gain nothing from more, and on a busy CI machine
    spinning OpenMP threads slow them down several times."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return tiny_dataset(tmp_path_factory.mktemp("data") / "shapes")


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["state_dict"]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_end_to_end_files_metrics_and_reload(data, tmp_path):
    cfg = tiny_config(data, tmp_path, train={"epochs": 4, "device": "cpu", "num_predictions": 2},
                      optim={"lr": 0.02})
    result = train(cfg)
    run = tmp_path / "tiny"
    assert result.run_dir == run and result.stopped == "completed" and result.epochs == 4
    for name in ("config.yaml", "checkpoints/best.pt", "checkpoints/last.pt", "metrics.csv",
                 "plots/loss.png", "plots/miou.png"):
        assert (run / name).is_file(), name

    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert {"lr", "train_loss", "val_loss", "miou", "pixel_acc", "iou_background",
            "iou_circle", "iou_square", "seconds"} <= set(rows[0])
    losses = [float(r["train_loss"]) for r in rows]
    assert losses[-1] < losses[0]  # it learns

    # the saved config is the resolved run config and reads back to the same object
    saved = load_config(run / "config.yaml")
    assert saved.data.num_classes == 3 and saved.model.in_channels == 3
    assert saved.data.class_names == ["background", "circle", "square"]
    assert RunConfig.model_validate(load_checkpoint(run / "checkpoints/last.pt")["config"]) == saved

    # best.pt rebuilds with no other information and scores exactly what the CSV says
    best = load_checkpoint(run)
    assert best["path"].endswith("best.pt")
    best_epoch = best["epoch"]
    model = model_from_checkpoint(best)
    from unetlab.data import open_dataset
    from unetlab.data.preprocess import Normalization

    val = open_dataset(data, "val", normalization=Normalization.from_dict(best["data"]))
    loader = torch.utils.data.DataLoader(val, batch_size=1)
    measured = collect_confusion(model, loader, 3, "cpu")
    row = next(r for r in rows if int(r["epoch"]) == best_epoch)
    assert measured.matrix.compute()["miou"] == pytest.approx(float(row["miou"]), abs=1e-5)
    assert float(row["miou"]) == max(float(r["miou"]) for r in rows if r["miou"])

    # the prediction files written at the end come from the best weights
    from unetlab.data.io import read_mask

    predicted = read_mask(run / "predictions" / f"{val.ids[0]}_mask.png")
    with torch.no_grad():
        labels = model(val[0]["image"][None]).argmax(1)[0].numpy()
    np.testing.assert_array_equal(predicted, labels)
    assert (run / "predictions" / f"{val.ids[0]}.png").is_file()


def _interrupt_after(monkeypatch, global_step: int) -> None:
    """Make the trainer see a Ctrl-C during step ``global_step`` (it finishes that step)."""
    original_step = trainer_module.Trainer._step

    def step_then_interrupt(self, batch, epoch, steps):
        interrupted, time_up = original_step(self, batch, epoch, steps)
        return interrupted or self.state.global_step == global_step, time_up

    monkeypatch.setattr(trainer_module.Trainer, "_step", step_then_interrupt)


@pytest.mark.parametrize(
    ("stop_at", "epochs_done"), [(4, 1), (3, 0)], ids=["between-epochs", "mid-epoch"]
)
def test_resume_equals_straight_run(data, tmp_path, monkeypatch, stop_at, epochs_done):
    """2 epochs straight == stopped after step ``stop_at`` (the end of epoch 1, or inside it)
    and resumed; augmentation, dropout and a cosine schedule with warm-up all on."""
    model = {"name": "unet", "options": {"base": 4, "depth": 2, "dropout": 0.2}}
    straight = train(tiny_config(data, tmp_path / "a", model=model))
    with monkeypatch.context() as patch:
        _interrupt_after(patch, stop_at)
        stopped = train(tiny_config(data, tmp_path / "b", model=model))
    assert stopped.stopped == "interrupted"
    assert (stopped.global_step, stopped.epochs) == (stop_at, epochs_done)
    resumed = train(config=None, resume=stopped.run_dir)
    assert resumed.epochs == 2 and resumed.global_step == straight.global_step
    a, b = _weights(straight.last_checkpoint), _weights(resumed.last_checkpoint)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
    rows_a = list(csv.DictReader((straight.run_dir / "metrics.csv").open()))
    rows_b = list(csv.DictReader((resumed.run_dir / "metrics.csv").open()))
    assert [r["train_loss"] for r in rows_a] == [r["train_loss"] for r in rows_b]
    assert [r["miou"] for r in rows_a] == [r["miou"] for r in rows_b]


# ---------------------------------------------------------------- freezing the encoder


class _TinyEncoderUNet(nn.Module):
    """An encoder (conv + batch norm, what a pretrained backbone has) and a decoder."""

    size_multiple = 2

    def __init__(self, num_classes: int, in_channels: int = 3):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.decoder = nn.Sequential(
            nn.Upsample(scale_factor=2), nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6),
            nn.ReLU(), nn.Conv2d(6, num_classes, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def _register_tiny_encoder_model() -> str:
    from unetlab.models import list_models, register_model

    name = "test_tiny_encoder_unet"
    if name not in list_models():
        register_model(name)(lambda num_classes, in_channels=3: _TinyEncoderUNet(
            num_classes, in_channels))
    return name


def test_frozen_encoder_keeps_weights_and_batchnorm_statistics(data, tmp_path, monkeypatch):
    name = _register_tiny_encoder_model()
    snapshots: list[dict[str, torch.Tensor]] = []
    original_enter = trainer_module.Trainer._enter_epoch

    def record(self, epoch):  # the model's full state (buffers too) at each epoch start
        snapshots.append({k: v.clone() for k, v in self.model.state_dict().items()})
        original_enter(self, epoch)

    monkeypatch.setattr(trainer_module.Trainer, "_enter_epoch", record)
    result = train(tiny_config(
        data, tmp_path, model={"name": name, "options": {}},
        train={"epochs": 2, "device": "cpu", "freeze_encoder_epochs": 1,
               "unfreeze_batch_size": 4, "num_predictions": 0},
    ))
    after_frozen = snapshots[1]
    final = _weights(result.last_checkpoint)
    initial = snapshots[0]
    encoder = [k for k in initial if k.startswith("encoder.")]
    decoder = [k for k in initial if k.startswith("decoder.") and initial[k].is_floating_point()]
    assert any(k.endswith("running_mean") for k in encoder)
    for key in encoder:  # weights AND running statistics untouched while frozen
        torch.testing.assert_close(after_frozen[key], initial[key], rtol=0, atol=0, msg=key)
    assert all(not torch.equal(after_frozen[k], initial[k]) for k in decoder if "weight" in k)
    # unfrozen in epoch 2: the encoder trains and its statistics move
    assert not torch.equal(final["encoder.0.weight"], initial["encoder.0.weight"])
    assert not torch.equal(final["encoder.1.running_mean"], initial["encoder.1.running_mean"])
    # epoch 1: 8 images / batch 2 = 4 steps; epoch 2 rebuilt with batch 4: 2 steps
    assert result.global_step == 4 + 2


def test_freezing_a_model_without_encoder_is_refused(data, tmp_path):
    with pytest.raises(UnetlabError, match="freeze_encoder_epochs"):
        train(tiny_config(data, tmp_path, overrides=("train.freeze_encoder_epochs=1",)))


# ---------------------------------------------------------------- bad runs stop clearly


def test_nan_loss_stops_with_message_and_keeps_last_checkpoint(data, tmp_path, monkeypatch):
    first = train(tiny_config(data, tmp_path, overrides=("train.epochs=1",)))
    digest = _digest(first.last_checkpoint)
    original_build = trainer_module.build_criterion

    def poisoned(*args, **kwargs):
        loss = original_build(*args, **kwargs)
        calls = {"n": 0}

        def forward(logits, target, weight=None):
            calls["n"] += 1
            value = type(loss).forward(loss, logits, target, weight)
            return value * float("nan") if calls["n"] == 2 else value

        loss.forward = forward
        return loss

    monkeypatch.setattr(trainer_module, "build_criterion", poisoned)
    with pytest.raises(TrainingDiverged) as info:
        train(tiny_config(data, tmp_path), resume=first.run_dir)
    text = info.value.format()
    assert "epoch 2, step 2" in text and "nan" in text
    assert "lower optim.lr" in text and "kept unchanged" in text
    assert _digest(first.last_checkpoint) == digest


def test_patch_size_that_does_not_fit_names_legal_sizes(data, tmp_path):
    with pytest.raises(UnetlabError) as info:
        train(tiny_config(data, tmp_path, overrides=("data.patch_size=30",)))
    assert "data.patch_size 30x30" in str(info.value) and "28x28 or 32x32" in str(info.value)


def test_weighted_ce_without_weight_map_is_refused(data, tmp_path):
    with pytest.raises(UnetlabError, match="weight_map"):
        train(tiny_config(data, tmp_path, overrides=("loss.name=weighted_ce",)))


def test_valid_padding_and_weight_map_train(tmp_path, monkeypatch):
    """A valid-padding U-Net with the paper's weight map: the loss sees the target and the
    weights centre-cropped to the smaller output (44 px in, 28 px out at depth 1: a margin of
    8 px on each side), pixel for pixel the centre of the batch's own mask and weight map."""
    batches, scored = [], []
    original_step = trainer_module.Trainer._step
    original_criterion = trainer_module.build_criterion

    def recording_step(self, batch, epoch, steps):
        batches.append((batch["mask"].clone(), batch["weight"].clone()))
        return original_step(self, batch, epoch, steps)

    def recording_criterion(*args, **kwargs):
        loss = original_criterion(*args, **kwargs)
        forward = loss.forward

        def recorded(logits, target, weight=None):
            if len(scored) < len(batches):  # a training step (validation comes after them)
                scored.append((tuple(logits.shape[-2:]), target.clone(), weight.clone()))
            return forward(logits, target, weight)

        loss.forward = recorded
        return loss

    monkeypatch.setattr(trainer_module.Trainer, "_step", recording_step)
    monkeypatch.setattr(trainer_module, "build_criterion", recording_criterion)
    data = tiny_dataset(tmp_path / "d", n_train=4, n_val=2, num_classes=2)
    result = train(tiny_config(
        data, tmp_path, overrides=("train.epochs=1", "data.patch_size=44", "loss.name=weighted_ce",
                                   "loss.weight_map={w0: 10, sigma: 5, object_classes: [1]}",
                                   "train.num_predictions=0"),
        model={"name": "unet", "options": {"base": 4, "depth": 1, "padding": "valid"}},
    ))
    assert result.metrics["val_loss"] > 0 and 0 <= result.metrics["miou"] <= 1
    assert len(scored) == len(batches) == 2
    for (mask, weight), (size, target, cropped_weight) in zip(batches, scored, strict=True):
        assert tuple(mask.shape[-2:]) == (44, 44) and size == (28, 28)
        torch.testing.assert_close(target, mask[:, 8:36, 8:36].long(), rtol=0, atol=0)
        torch.testing.assert_close(cropped_weight, weight[:, 8:36, 8:36], rtol=0, atol=0)
        assert float(weight.max()) > 1.5  # the border term of the map is there to be cropped


def test_early_stopping_after_patience_validations_without_improvement(data, tmp_path):
    """Selecting on the *highest* train loss: the loss falls, so epoch 1 stays best and the run
    stops once ``patience`` further validations failed to beat it."""
    result = train(tiny_config(data, tmp_path, overrides=(
        "train.epochs=6", "train.best_metric=train_loss", "train.mode=max",
        "train.early_stopping={patience: 2}", "optim.lr=0.02",
    )))
    rows = list(csv.DictReader((result.run_dir / "metrics.csv").open()))
    losses = [float(r["train_loss"]) for r in rows]
    assert result.stopped == "early_stopping" and result.epochs == 3
    assert losses[1] < losses[0] and losses[2] < losses[0]  # two epochs without improvement
    assert load_checkpoint(result.best_checkpoint)["epoch"] == 1
    assert result.best_metric == pytest.approx(losses[0], rel=1e-5)


def test_binary_bce_run_has_one_output_channel_and_two_scored_classes(tmp_path):
    data = tiny_dataset(tmp_path / "d", n_train=4, n_val=2, num_classes=2)
    result = train(tiny_config(data, tmp_path, overrides=("train.epochs=1", "loss.name=bce")))
    checkpoint = load_checkpoint(result.last_checkpoint)
    assert checkpoint["model"]["num_classes"] == 1
    assert checkpoint["data"]["class_names"] == ["background", "circle"]
    assert {"iou_background", "iou_circle"} <= set(result.metrics)
    assert model_from_checkpoint(checkpoint)(torch.zeros(1, 3, 32, 32)).shape[1] == 1
