"""Ctrl-C during ``unetlab train``: the step finishes, last.pt is saved, the exit is clean.

The child holds at a known step (the ``after-step:STEP`` pause point, :mod:`unetlab.fs.testpoint`)
until the test has signalled it, so a fast machine cannot finish the run first."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from test_engine_train import tiny_config, tiny_dataset

from unetlab.engine.checkpoint import load_checkpoint

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def start_training(args: list[str], cwd: Path, hold: str | None = None) -> subprocess.Popen:
    """``unetlab train ARGS`` in a subprocess whose output we read line by line; ``hold``
    (``STEP:FILE``) makes it wait after global step STEP until FILE exists."""
    env = dict(ENV)
    if hold is not None:
        step, _, release = hold.partition(":")
        env.update(UNETLAB_PAUSE_AT=f"after-step:{step}", UNETLAB_PAUSE_RELEASE=release)
    return subprocess.Popen(
        [sys.executable, "-m", "unetlab.cli.main", "train", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def read_until(process: subprocess.Popen, marker: str, timeout: float = 900) -> list[str]:
    """Lines of output up to and including the first one that contains ``marker``
    (``timeout`` only guards against a hang: the child holds at the marker's step)."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if marker in line:
            return lines
    process.kill()
    raise AssertionError(f"never saw {marker!r}; output:\n{''.join(lines)}")


def long_epoch_config(tmp_path: Path, epochs: int, repeat: int = 10) -> Path:
    """A tiny run whose epochs are long enough (4 x ``repeat`` steps) to be interrupted in the
    middle."""
    data = tiny_dataset(tmp_path / "data")
    cfg = tiny_config(
        data, tmp_path / "runs",
        overrides=(f"train.epochs={epochs}", f"data.repeat={repeat}", "train.log_every=1"),
    )
    return cfg.save(tmp_path / "run.yaml")


def test_sigint_saves_last_checkpoint_and_says_how_to_resume(tmp_path):
    config = long_epoch_config(tmp_path, epochs=2)
    release = tmp_path / "release"
    process = start_training([str(config)], tmp_path, hold=f"3:{release}")
    read_until(process, "epoch 1/2: 3/40 it")  # the child now waits after step 3
    process.send_signal(signal.SIGINT)
    release.touch()
    output, _ = process.communicate(timeout=900)
    assert process.returncode == 130, output
    assert "Stopping after this step" in output
    assert "resume with: unetlab train --resume" in output
    assert "Traceback" not in output
    checkpoint = load_checkpoint(tmp_path / "runs" / "tiny" / "checkpoints" / "last.pt")
    assert checkpoint["epoch"] == 0  # no epoch completed: saved in the middle of the first
    # step 4 sees the request, finishes, and the run stops there
    assert checkpoint["position"]["step_in_epoch"] == checkpoint["global_step"] == 4
