"""A run killed with SIGKILL in the middle of an epoch resumes without losing anything saved.

The child holds after global step 25 (epoch 2, step 5) until a file appears that never does:
it is killed there, never racing to the end of the run first."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys

from test_engine_signals import ENV, long_epoch_config, read_until, start_training

from unetlab.engine.checkpoint import load_checkpoint


def test_sigkill_mid_epoch_then_resume_finishes_the_run(tmp_path):
    config = long_epoch_config(tmp_path, epochs=2, repeat=5)
    run = tmp_path / "runs" / "tiny"
    process = start_training([str(config)], tmp_path, hold=f"25:{tmp_path / 'never'}")
    read_until(process, "epoch 2/2: 5/20 it")  # epoch 1 is checkpointed, epoch 2 is held
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL

    # whatever was on disk is whole: every checkpoint loads (weights_only) and is epoch 1
    checkpoints = sorted((run / "checkpoints").glob("*.pt"))
    assert {p.name for p in checkpoints} == {"best.pt", "last.pt"}
    for path in checkpoints:
        assert load_checkpoint(path)["epoch"] == 1
    before = list(csv.DictReader((run / "metrics.csv").open()))
    assert [row["epoch"] for row in before] == ["1"]

    resumed = subprocess.run(
        [sys.executable, "-m", "unetlab.cli.main", "train", "--resume", str(run)],
        cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=900,  # a hang guard
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming at epoch 2/2" in resumed.stdout
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last["epoch"] == 2
    assert last["global_step"] == 2 * 20
    after = list(csv.DictReader((run / "metrics.csv").open()))
    assert [row["epoch"] for row in after] == ["1", "2"]
    assert after[0] == before[0]  # the checkpointed epoch is kept as it was
