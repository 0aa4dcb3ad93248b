"""``unetlab train`` under ``torchrun`` with 2 CPU processes (gloo) equals one process.

Reference: one process trained on the same global batch (2 x 2 = 4 images per step). The
model has no batch norm: per-process batch statistics (without SyncBatchNorm, which is
CUDA-only in torch) would legitimately differ from the 4-image statistics. Crops cover whole
images (no scale augmentation padding with ignored pixels), so each process's mean loss has the
same number of pixels and DDP's average of the two means is the 4-image mean exactly.
Validation has 5 images: the shards are 3 + 2, nothing padded or counted twice.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
import torch
from test_engine_train import tiny_config, tiny_dataset

from unetlab.engine.checkpoint import load_checkpoint
from unetlab.engine.trainer import train

SECTIONS = {
    "model": {"name": "unet", "options": {"base": 4, "depth": 2, "batch_norm": False}},
    "data": {"batch_size": 4, "augment": {"scale_range": [1, 1], "hflip": True, "vflip": True}},
}


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without distributed")
def test_two_processes_equal_one_process_with_the_global_batch(tmp_path):
    data = tiny_dataset(tmp_path / "data", n_train=8, n_val=5)
    single = train(tiny_config(data, tmp_path / "single", **SECTIONS))

    per_process = {**SECTIONS, "data": {**SECTIONS["data"], "batch_size": 2}}
    config = tiny_config(data, tmp_path / "ddp", **per_process).save(tmp_path / "ddp.yaml")
    completed = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "unetlab.cli.main", "train", str(config)],
        cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True, text=True, timeout=240,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "2 process(es), batch 2 per process (4 global)" in output
    assert output.count("run folder:") == 1  # only rank 0 reports

    ddp = load_checkpoint(tmp_path / "ddp" / "tiny" / "checkpoints" / "last.pt")
    reference = load_checkpoint(single.last_checkpoint)
    assert ddp["global_step"] == reference["global_step"] == 2 * 2  # 2 epochs of 8 / 4
    assert not any(key.startswith("module.") for key in ddp["state_dict"])
    for key, value in reference["state_dict"].items():
        torch.testing.assert_close(ddp["state_dict"][key], value, rtol=1e-4, atol=1e-6, msg=key)

    rows_ddp = list(csv.DictReader((tmp_path / "ddp" / "tiny" / "metrics.csv").open()))
    rows_single = list(csv.DictReader((single.run_dir / "metrics.csv").open()))
    for ddp_row, single_row in zip(rows_ddp, rows_single, strict=True):
        for column in ("miou", "pixel_acc", "val_loss", "iou_circle", "train_loss"):
            assert float(ddp_row[column]) == pytest.approx(float(single_row[column]), rel=1e-4)
