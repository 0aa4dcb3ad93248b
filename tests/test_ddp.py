"""``unetlab train`` under ``torchrun`` with 2 CPU processes (gloo) equals one process.

Reference: one process trained on the same global batch (2 x 2 = 4 images per step). The
model has no batch norm: per-process batch statistics (without SyncBatchNorm, which is
CUDA-only in torch) would legitimately differ from the 4-image statistics. Crops cover whole
images (no scale augmentation padding with ignored pixels), so each process's mean loss has the
same number of pixels and DDP's average of the two means is the 4-image mean exactly.
Validation has 5 images: the shards are 3 + 2, nothing padded or counted twice. A 2-process
run interrupted on either rank, in either epoch, and resumed with 2 processes ends equal to it
too: weights, optimizer state and every logged metric, the interrupted epoch's train loss
included (its partial sums over both ranks travel in ``last.pt``).
"""

from __future__ import annotations

import csv
import os
import socket
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


needs_distributed = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="torch without distributed"
)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("ddp") / "data", n_train=8, n_val=5)


@pytest.fixture(scope="module")
def single(data, tmp_path_factory):
    """The reference: one process, the global batch of 4."""
    return train(tiny_config(data, tmp_path_factory.mktemp("single"), **SECTIONS))


def assert_same_run(ddp_run, single) -> None:
    """Weights, optimizer state and metrics of a 2-process run equal the single-process
    reference."""
    ddp = load_checkpoint(ddp_run / "checkpoints" / "last.pt")
    reference = load_checkpoint(single.last_checkpoint)
    assert ddp["global_step"] == reference["global_step"] == 2 * 2  # 2 epochs of 8 / 4
    assert not any(key.startswith("module.") for key in ddp["state_dict"])
    for key, value in reference["state_dict"].items():
        torch.testing.assert_close(ddp["state_dict"][key], value, rtol=1e-4, atol=1e-6, msg=key)
    optimizer_state = reference["optimizer"]["state"]
    assert optimizer_state and ddp["optimizer"]["state"].keys() == optimizer_state.keys()
    for index, moments in optimizer_state.items():
        for name, value in moments.items():
            torch.testing.assert_close(
                ddp["optimizer"]["state"][index][name], value, rtol=1e-4, atol=1e-6,
                msg=f"optimizer state {index}.{name}",
            )

    rows_ddp = list(csv.DictReader((ddp_run / "metrics.csv").open()))
    rows_single = list(csv.DictReader((single.run_dir / "metrics.csv").open()))
    for ddp_row, single_row in zip(rows_ddp, rows_single, strict=True):
        for column in ("miou", "pixel_acc", "val_loss", "iou_circle", "train_loss"):
            assert float(ddp_row[column]) == pytest.approx(float(single_row[column]), rel=1e-4)


@needs_distributed
def test_two_processes_equal_one_process_with_the_global_batch(data, single, tmp_path):
    per_process = {**SECTIONS, "data": {**SECTIONS["data"], "batch_size": 2}}
    config = tiny_config(data, tmp_path / "ddp", **per_process).save(tmp_path / "ddp.yaml")
    completed = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "unetlab.cli.main", "train", str(config)],
        cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True, text=True, timeout=900,  # a hang guard
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "2 process(es), batch 2 per process (4 global)" in output
    assert output.count("run folder:") == 1  # only rank 0 reports

    assert_same_run(tmp_path / "ddp" / "tiny", single)


INTERRUPTIBLE_SCRIPT = """
import os, sys
import torch.multiprocessing
from unetlab.engine import trainer as trainer_module
from unetlab.engine.trainer import train

def worker(rank, config, resume, port, interrupt_rank, interrupt_at):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    if rank == interrupt_rank and interrupt_at:  # a Ctrl-C only this rank sees, during that step
        step = trainer_module.Trainer._step
        def signal_then_step(self, batch, epoch, steps):
            if self.state.global_step + 1 == interrupt_at:
                self.interrupt.requested = True
            return step(self, batch, epoch, steps)
        trainer_module.Trainer._step = signal_then_step
    result = train(None if resume else config, resume=resume or None)
    print(f"rank {rank}: {result.stopped} at global step {result.global_step}", flush=True)

if __name__ == "__main__":
    config, resume, port, interrupt_rank, interrupt_at = sys.argv[1:]
    torch.multiprocessing.start_processes(
        worker, args=(config, resume, port, int(interrupt_rank), int(interrupt_at)), nprocs=2,
        start_method="fork",
    )
"""


def _free_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


def _two_processes(tmp_path, config="", resume="", interrupt_rank=0, interrupt_at=0) -> str:
    done = subprocess.run(
        [sys.executable, "-c", INTERRUPTIBLE_SCRIPT, str(config), str(resume), _free_port(),
         str(interrupt_rank), str(interrupt_at)],
        cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True, text=True, timeout=900,  # a hang guard
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    return output


@needs_distributed
@pytest.mark.parametrize(
    ("interrupt_rank", "interrupt_at"),
    [(1, 1), (0, 3), (1, 2)],
    ids=["rank1-in-epoch1", "rank0-in-epoch2", "rank1-at-end-of-epoch1"],
)
def test_two_processes_interrupted_by_one_rank_then_resumed_equal_one_process(
    data, single, tmp_path, interrupt_rank, interrupt_at
):
    """Only one rank sees a Ctrl-C, during global step ``interrupt_at`` (2 steps per epoch):
    both ranks finish that step and stop (they agree before each update), one resumable
    last.pt holds each rank's generators and, in the middle of an epoch, the partial epoch's
    loss tallies of both ranks; a 2-process resume ends where the uninterrupted single process
    does."""
    per_process = {**SECTIONS, "data": {**SECTIONS["data"], "batch_size": 2}}
    config = tiny_config(data, tmp_path / "runs", **per_process).save(tmp_path / "ddp.yaml")
    output = _two_processes(
        tmp_path, config=config, interrupt_rank=interrupt_rank, interrupt_at=interrupt_at
    )
    assert f"rank 0: interrupted at global step {interrupt_at}" in output
    assert f"rank 1: interrupted at global step {interrupt_at}" in output
    run = tmp_path / "runs" / "tiny"
    partial = load_checkpoint(run / "checkpoints" / "last.pt")
    epochs_done, into_next = divmod(interrupt_at, 2)
    assert (partial["epoch"], partial["position"]["step_in_epoch"]) == (epochs_done, into_next)
    assert partial["position"]["loss_count"] == 2 * into_next  # those steps on both ranks
    assert len(partial["rng"]) == 2  # each rank's generators, for its own shard

    output = _two_processes(tmp_path, resume=run)
    assert "rank 0: completed at global step 4" in output
    assert_same_run(run, single)
