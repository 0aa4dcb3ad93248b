"""Several processes, one run: ``torchrun`` environment, samplers, DDP wrapping.

``torchrun --nproc_per_node=N`` starts N copies of ``unetlab train``; each reads its rank from
the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``), uses
GPU ``LOCAL_RANK`` (NCCL) or the CPU (gloo), and sees its own shard of every epoch. The global
batch is ``data.batch_size x WORLD_SIZE``. Only rank 0 writes files and prints.

Training shards come from :class:`EpochSampler` (a shuffled, padded split like
``DistributedSampler``: every rank gets the same number of batches, or DDP would hang).
Validation uses :class:`ShardSampler`, which never pads, so every image is scored exactly once
and the all-reduced confusion matrix equals the single-process one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

from unetlab.errors import UnetlabError

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """This process's place in the run."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False  # this run started the process group (and ends it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``train.device`` by the one device rule (:func:`unetlab.inference.network.resolve_device`),
    ``cuda`` (or ``auto`` with a GPU) meaning ``cuda:LOCAL_RANK``, made the current device."""
    from unetlab.inference.network import resolve_device as device_rule

    resolved = device_rule(device, name="train.device")
    if resolved.type == "cuda":
        if resolved.index is None:
            resolved = torch.device("cuda", local_rank)
        torch.cuda.set_device(resolved)
    return resolved


def launched_world_size() -> int:
    """The number of processes ``torchrun`` started (``WORLD_SIZE``; 1 when run alone)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device: str = "auto") -> DistContext:
    """Join the process group when started by ``torchrun`` (``WORLD_SIZE`` > 1), else run alone.

    A group the caller already initialised is used as it is (and left open at the end).
    """
    world_size = launched_world_size()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch_device = resolve_device(device, local_rank)
    owns = False
    if world_size > 1 and not dist.is_initialized():
        if torch_device.type == "cuda":
            dist.init_process_group(backend="nccl", device_id=torch_device)
        else:
            dist.init_process_group(backend="gloo")
        owns = True
    return DistContext(rank, local_rank, world_size, torch_device, owns)


def cleanup(context: DistContext) -> None:
    if context.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def on_main(context: DistContext, function: Callable[[], T]) -> T:
    """Run ``function`` on rank 0 only and hand its result (or its UnetlabError) to every rank:
    e.g. the dataset check reads every file once, not once per process."""
    if not context.distributed:
        return function()
    result: list[Any] = [None]  # rank 0's ("ok", value) or ("error", text), broadcast
    error: UnetlabError | None = None
    if context.is_main:
        try:
            result[0] = ("ok", function())
        except UnetlabError as exc:
            error, result[0] = exc, ("error", exc.format())  # text: any subclass pickles
    dist.broadcast_object_list(result, src=0)
    status, value = result[0]
    if error is not None:
        raise error
    if status == "error":
        raise UnetlabError(str(value))
    return value


def barrier(context: DistContext) -> None:
    if context.distributed:
        dist.barrier()


def max_over_ranks(context: DistContext, *values: float) -> list[float]:
    """Each value's maximum over all ranks, in one small all-reduce: how the ranks agree on
    "stop now" flags and on the training clock (so they use the same learning rate)."""
    return _reduce_over_ranks(context, "max", values)


def sum_over_ranks(context: DistContext, *values: float) -> list[float]:
    """Each value's sum over all ranks, in one small all-reduce: per-rank tallies (the epoch's
    loss sum and step count) made into the run's totals."""
    return _reduce_over_ranks(context, "sum", values)


def _reduce_over_ranks(context: DistContext, how: str, values: tuple[float, ...]) -> list[float]:
    if not context.distributed:
        return [float(v) for v in values]
    device = context.device if context.device.type == "cuda" else torch.device("cpu")
    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    op = dist.ReduceOp.MAX if how == "max" else dist.ReduceOp.SUM
    dist.all_reduce(tensor, op=op)
    return [float(v) for v in tensor.tolist()]


def gather_objects(context: DistContext, value: object) -> list[object]:
    """``value`` from every rank, in rank order (small picklable objects only)."""
    if not context.distributed:
        return [value]
    gathered: list[object] = [None] * context.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def wrap_model(model: nn.Module, context: DistContext) -> nn.Module:
    """DDP-wrap ``model``; unchanged in a single process.

    Call again after changing which parameters require gradients (unfreezing the encoder): DDP
    only synchronises the parameters that needed gradients when it was built.
    """
    if not context.distributed:
        return model
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside a DDP wrapper (checkpoints never carry the ``module.`` prefix)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


class EpochSampler(Sampler):
    """Training indices for one rank: shuffled by ``(seed, epoch)``, padded to a multiple of the
    world size, rank ``r`` taking every ``world_size``-th index from ``r``.

    It yields ``(epoch, key)`` pairs so the dataset can seed the augmentation of each sample
    from them (see :class:`~unetlab.engine.loaders.SeededDataset`): the result does not depend on
    the number of workers or processes, or on where a run was resumed. With ``repeat`` passes
    per epoch the key is ``pass * size + index``: every pass over an image gets its own crop and
    augmentation (the sample is ``key % size``). ``skip`` drops the first keys of the next epoch
    (resuming in the middle of one).
    """

    def __init__(self, size: int, context: DistContext, seed: int, repeat: int = 1):
        self.size, self.context, self.seed, self.repeat = size, context, seed, repeat
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def _indices(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = [
            repeat * self.size + int(i)
            for repeat in range(self.repeat)
            for i in torch.randperm(self.size, generator=generator)
        ]
        world = self.context.world_size
        order += order[: (-len(order)) % world]  # pad so every rank gets as many
        return [int(i) for i in order[self.context.rank :: world]]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for index in self._indices()[self.skip :]:
            yield self.epoch, index

    def __len__(self) -> int:
        total = self.size * self.repeat
        return -(-total // self.context.world_size) - self.skip


class ShardSampler(Sampler):
    """Validation indices ``rank, rank + world, ...``: no padding, no duplicates, in order."""

    def __init__(self, size: int, context: DistContext):
        self.indices = list(range(context.rank, size, context.world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
