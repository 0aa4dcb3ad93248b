"""Data loaders for training and validation, with reproducible augmentation.

Each training sample is read under a seed made from ``(run seed, epoch, sample index)`` (the
dataset draws its augmentation from torch's generator, seeded here per sample). Why: the random
crops and flips then do not depend on the number of loader workers or processes, nor on where
a run was stopped and resumed, so a resumed run continues exactly and a ``torchrun`` run sees
the same samples as a single process with the same global batch.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from torch.utils.data import DataLoader, Dataset

from unetlab.engine.distributed import DistContext, EpochSampler, ShardSampler
from unetlab.engine.interrupt import ignore_interrupts_in_worker
from unetlab.engine.rng import derived_seed, seeded


class SeededDataset(Dataset):
    """Wraps a dataset so items are fetched with ``(epoch, index)`` keys, each under its seed."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int] | int) -> dict[str, Any]:
        """``key``: ``(epoch, pass * len + index)`` from the sampler; each key its own seed."""
        epoch, index = key if isinstance(key, tuple) else (0, key)
        with seeded(derived_seed(self.seed, epoch, index)):
            return self.dataset[index % len(self)]


def _init_worker(previous: Callable[[int], None] | None, worker_id: int) -> None:
    ignore_interrupts_in_worker(worker_id)
    if previous is not None:
        previous(worker_id)


def _loader(dataset: Dataset, **options: Any) -> DataLoader:
    from unetlab.data import make_loader

    loader = make_loader(dataset, **options)
    if loader.num_workers:
        loader.worker_init_fn = partial(_init_worker, loader.worker_init_fn)
    return loader


def train_loader(
    dataset: Dataset,
    batch_size: int,
    context: DistContext,
    seed: int,
    num_workers: int,
    repeat: int = 1,
) -> tuple[DataLoader, EpochSampler]:
    """Shuffled, sharded, incomplete last batch dropped (batch norm needs >1 sample)."""
    sampler = EpochSampler(len(dataset), context, seed, repeat)  # type: ignore[arg-type]
    loader = _loader(
        SeededDataset(dataset, seed),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        sampler=sampler,
        drop_last=True,
    )
    return loader, sampler


def val_loader(
    dataset: Dataset, batch_size: int, context: DistContext, num_workers: int
) -> DataLoader:
    """In order, each image exactly once across all processes."""
    return _loader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        sampler=ShardSampler(len(dataset), context),  # type: ignore[arg-type]
        drop_last=False,
    )
