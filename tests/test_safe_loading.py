"""Safe loading (issue 5): a checkpoint crafted to run code is refused everywhere unetlab reads
one, a real checkpoint loads whole, and a save that dies half-way leaves the old file intact.

The crafted files are real attacks in miniature: unpickling them writes a marker file (the
control test shows it does, with ``weights_only=False``). Refusal is checked by the error and
by the marker never appearing.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unetlab.cli.main import main
from unetlab.engine import checkpoint as checkpoint_module
from unetlab.engine.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from unetlab.engine.config import load_config
from unetlab.engine.rng import capture_rng, restore_rng
from unetlab.errors import UnetlabError
from unetlab.fs import atomic as atomic_module
from unetlab.models import build_model, load_encoder_weights
from unetlab.models.encoders import MobileNetV2Encoder


class RunsCode:
    """Unpickling this calls ``Path.write_text(marker, ...)``: any callable could be there."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran while loading\n"))


def tiny_model() -> torch.nn.Module:
    return build_model("unet", 2, base=4)


def payload_of(model: torch.nn.Module, **extra) -> dict:
    """The keys a unetlab checkpoint has (see unetlab.engine.checkpoint's docstring)."""
    return {
        "model": dict(model.spec),
        "state_dict": model.state_dict(),
        "data": {
            "class_names": ["background", "object"],
            "class_colors": [[0, 0, 0], [255, 0, 0]],
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
        },
        **extra,
    }


def bare_object(path: Path, marker: Path) -> Path:
    torch.save(RunsCode(marker), path)
    return path


def inside_config(path: Path, marker: Path) -> Path:
    """An otherwise valid unetlab checkpoint, written by unetlab, with one poisoned value."""
    payload = payload_of(tiny_model(), config={"name": "run", "notes": RunsCode(marker)})
    return save_checkpoint(payload, path)


def inside_state_dict(path: Path, marker: Path) -> Path:
    model = tiny_model()
    state = model.state_dict()
    state["head.extra"] = RunsCode(marker)
    return save_checkpoint({**payload_of(model), "state_dict": state}, path)


def as_weights_file(path: Path, marker: Path) -> Path:
    """What a poisoned "pretrained weights" download would look like: a wrapped state dict."""
    state = dict(MobileNetV2Encoder().state_dict())
    state["classifier.1.weight"] = RunsCode(marker)
    torch.save({"state_dict": state, "epoch": 90}, path)
    return path


CRAFTED = [bare_object, inside_config, inside_state_dict]


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "pwned.txt"


def test_crafted_files_do_run_code_when_loaded_unsafely(tmp_path) -> None:
    """The control: without weights_only the payload executes, so the refusals below matter."""
    for make in [*CRAFTED, as_weights_file]:
        marker = tmp_path / f"{make.__name__}.txt"
        path = make(tmp_path / f"{make.__name__}.pt", marker)
        torch.load(path, weights_only=False)
        assert marker.read_text() == "code ran while loading\n", make.__name__


@pytest.mark.parametrize("make", CRAFTED)
def test_load_checkpoint_refuses_code(make, tmp_path, marker) -> None:
    path = make(tmp_path / "model.pt", marker)
    with pytest.raises(UnetlabError) as caught:
        load_checkpoint(path)
    assert caught.value.path == str(path)
    assert "refused" in caught.value.message
    assert "trust" in caught.value.hint
    assert not marker.exists()


def small_dataset(root: Path) -> Path:
    for folder in ("images", "masks", "splits"):
        (root / folder).mkdir(parents=True)
    for i in range(2):
        Image.fromarray(np.full((32, 32, 3), 60 * i, np.uint8)).save(root / "images" / f"{i}.png")
        Image.fromarray(np.eye(32, dtype=np.uint8)).save(root / "masks" / f"{i}.png")
    (root / "splits" / "train.txt").write_text("0\n")
    (root / "splits" / "val.txt").write_text("1\n")
    return root


def resume_run(checkpoint: Path, tmp: Path) -> list[str]:
    """A run folder whose last.pt is the crafted file, and the command resuming it."""
    run = tmp / "runs" / "poisoned"
    (run / "checkpoints").mkdir(parents=True)
    checkpoint.rename(run / "checkpoints" / "last.pt")
    config = {
        "name": "poisoned",
        "out_dir": str(tmp / "runs"),
        "data": {"root": str(small_dataset(tmp / "ds")), "patch_size": 32, "num_workers": 0},
        "model": {"name": "unet", "options": {"base": 4}},
        "train": {"epochs": 2, "device": "cpu"},
    }
    load_config(config).save(run / "config.yaml")
    return ["train", "--resume", str(run)]


COMMANDS = {
    "predict": lambda ckpt, tmp: ["predict", str(ckpt), str(tmp / "a.png"), "--out",
                                  str(tmp / "out"), "--device", "cpu", "--quiet"],
    "evaluate": lambda ckpt, tmp: ["evaluate", str(ckpt), "--data", str(small_dataset(tmp / "ds")),
                                   "--device", "cpu", "--out", str(tmp / "eval")],
    "summary": lambda ckpt, tmp: ["summary", str(ckpt), "--input", "3x32x32"],
    "export": lambda ckpt, tmp: ["export", str(ckpt), "--out", str(tmp / "model.onnx")],
    "bench": lambda ckpt, tmp: ["bench", str(ckpt), "--input", "3x32x32", "--runs", "1"],
    "train --resume": resume_run,
}  # fmt: skip


@pytest.mark.parametrize("make", CRAFTED)
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_commands_refuse_code(command, make, tmp_path, marker, capfd) -> None:
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "a.png")
    path = make(tmp_path / "model.pt", marker)
    argv = COMMANDS[command](path, tmp_path)
    capfd.readouterr()
    code = main(argv)
    out, err = capfd.readouterr()
    assert code == 2, err
    resumed = tmp_path / "runs" / "poisoned" / "checkpoints" / "last.pt"
    assert str(resumed if command == "train --resume" else path) in err, err
    assert "refused to load" in err, err
    assert "Traceback" not in err + out
    assert not marker.exists()
    assert not (tmp_path / "out").exists() and not (tmp_path / "model.onnx").exists()


@pytest.mark.parametrize("as_url", [False, True], ids=["path", "file-url"])
def test_pretrained_loader_refuses_code(as_url, tmp_path, marker) -> None:
    path = as_weights_file(tmp_path / "mobilenet_v2.pth", marker)
    source = path.resolve().as_uri() if as_url else str(path)
    with pytest.raises(UnetlabError, match="refused") as caught:
        load_encoder_weights(MobileNetV2Encoder(), source)
    assert caught.value.path == str(path)
    assert not marker.exists()


def test_model_option_pretrained_refuses_code(tmp_path, marker) -> None:
    """``build_model(..., pretrained=FILE)``: the route ``model.pretrained`` in a config takes."""
    path = as_weights_file(tmp_path / "weights.pth", marker)
    with pytest.raises(UnetlabError, match="refused"):
        build_model("mobilenet_unet", 2, pretrained=str(path))
    assert not marker.exists()


# ---------------------------------------------------------------- a legitimate checkpoint


def trained_payload() -> tuple[torch.nn.Module, torch.optim.Optimizer, dict]:
    """A model after one optimizer step and every key a training checkpoint holds."""
    model = tiny_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images, masks = torch.randn(2, 3, 32, 32), torch.randint(0, 2, (2, 32, 32))
    torch.nn.functional.cross_entropy(model(images), masks).backward()
    optimizer.step()  # moments and step counts in the optimizer, new BN running statistics
    payload = payload_of(
        model,
        config=load_config({"data": {"root": "data"}}).to_dict(),
        epoch=3,
        global_step=12,
        best_metric=0.625,
        metrics={"miou": 0.625, "val_loss": 0.41},
        history=[{"epoch": 3, "miou": 0.625}],
        optimizer=optimizer.state_dict(),
        scheduler={"name": "cosine", "elapsed": 1.5},
        scaler=torch.amp.GradScaler("cpu", enabled=False).state_dict(),
        rng=[capture_rng()],
        early_stopping={"metric": "miou", "best": 0.625, "best_epoch": 3, "bad_validations": 0},
        position={"step_in_epoch": 2, "loss_sum": 1.25, "loss_count": 2, "epoch_seconds": 0.5},
    )
    return model, optimizer, payload


def test_real_checkpoint_loads_and_reproduces_the_model(tmp_path) -> None:
    model, optimizer, payload = trained_payload()
    after_capture = torch.rand(5)  # the draws that follow the captured RNG state
    path = save_checkpoint(payload, tmp_path / "run" / "checkpoints" / "last.pt")

    loaded = load_checkpoint(tmp_path / "run")  # a run folder resolves to its checkpoint
    assert loaded["format"] == 1 and loaded["path"] == str(path)
    rebuilt = model_from_checkpoint(loaded)
    assert not rebuilt.training
    x = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model.eval()(x))
    for key, value in model.state_dict().items():
        assert torch.equal(loaded["state_dict"][key], value), key

    fresh = torch.optim.AdamW(rebuilt.parameters(), lr=1e-3)
    fresh.load_state_dict(loaded["optimizer"])
    for (_, mine), (_, theirs) in zip(
        sorted(optimizer.state_dict()["state"].items()),
        sorted(fresh.state_dict()["state"].items()),
        strict=True,
    ):
        assert torch.equal(mine["exp_avg"], theirs["exp_avg"])
        assert torch.equal(mine["exp_avg_sq"], theirs["exp_avg_sq"])
    restore_rng(loaded["rng"][0])
    assert torch.equal(torch.rand(5), after_capture)
    for key in ("config", "metrics", "history", "scheduler", "early_stopping", "position"):
        assert loaded[key] == payload[key], key
    assert (loaded["epoch"], loaded["global_step"], loaded["best_metric"]) == (3, 12, 0.625)


# ---------------------------------------------------------------- atomic writes


def half_written_then(error: BaseException):
    """A ``torch.save`` that writes the first half of the real bytes, then fails."""
    real_save = torch.save

    def save(obj, handle, *args, **kwargs) -> None:
        buffer = io.BytesIO()
        real_save(obj, buffer)
        data = buffer.getvalue()
        handle.write(data[: len(data) // 2])
        handle.flush()
        raise error

    return save


def failing(error: BaseException):
    def fail(*args, **kwargs):
        raise error

    return fail


CRASHES = {  # name: ((module, function, replacement) patched, what is raised)
    # an OS error reaches the user as a UnetlabError naming the file (unetlab.fs.oserrors)
    "disk full mid-write": (
        [(checkpoint_module.torch, "save", half_written_then(OSError(28, "No space")))],
        UnetlabError,
    ),
    "Ctrl-C mid-write": (
        [(checkpoint_module.torch, "save", half_written_then(KeyboardInterrupt()))],
        KeyboardInterrupt,
    ),
    "fsync fails": ([(atomic_module.os, "fsync", failing(OSError(5, "I/O error")))], UnetlabError),
    "rename fails": (
        [
            (atomic_module.os, "replace", failing(PermissionError(13, "Denied"))),
            (atomic_module.os, "link", failing(PermissionError(13, "Denied"))),
        ],
        UnetlabError,
    ),
}


@pytest.mark.parametrize("had_previous", [True, False], ids=["replacing", "first-save"])
@pytest.mark.parametrize("crash", sorted(CRASHES))
def test_crash_during_save_keeps_the_previous_file(crash, had_previous, tmp_path, monkeypatch):
    folder = tmp_path / "checkpoints"
    path = folder / "last.pt"
    old_model = tiny_model()
    if had_previous:
        save_checkpoint(payload_of(old_model, epoch=1), path)
    before = path.read_bytes() if had_previous else None

    patches, raised = CRASHES[crash]
    for module, name, replacement in patches:
        monkeypatch.setattr(module, name, replacement)
    with pytest.raises(raised):
        save_checkpoint(payload_of(tiny_model(), epoch=2), path)
    monkeypatch.undo()

    assert sorted(os.listdir(folder)) == (["last.pt"] if had_previous else [])  # no temp left
    if had_previous:
        assert path.read_bytes() == before
        loaded = load_checkpoint(path)
        assert loaded["epoch"] == 1
        for key, value in old_model.state_dict().items():
            assert torch.equal(loaded["state_dict"][key], value)
