"""DataLoader settings that suit segmentation training, in one place.

- ``num_workers``: decoding and augmenting run in worker processes so training never waits on
  data; 2 is a good start on a laptop, up to the number of free cores on a GPU machine
  (``benchmarks/loader.py`` measures batches/s for each setting).
- ``pin_memory``: on when CUDA is available (faster host-to-GPU copies), off on CPU.
- ``persistent_workers``: off by default. Workers are then started every epoch with seeds drawn
  from torch's main generator, so restoring that generator on resume reproduces the
  augmentation stream; persistent workers save the start-up time (about a second) per epoch
  but carry their random state across epochs, out of reach of a checkpoint.
- each worker seeds ``random`` and ``numpy`` from its torch seed (``worker_init_fn``), so code
  that uses them is reproducible too, and workers never share a stream.

The default collate works: samples are dicts of tensors and an ``id`` string.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def seed_worker(worker_id: int) -> None:
    """Seed ``random`` and ``numpy`` from the seed torch gave this worker."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    sampler: Sampler | None = None,
    drop_last: bool = False,
    persistent_workers: bool = False,
    generator: torch.Generator | None = None,
    **options: Any,
) -> DataLoader:
    """A DataLoader with the settings above; ``options`` pass through to DataLoader.

    With a ``sampler`` (distributed, epoch-seeded), ``shuffle`` is ignored: the sampler orders.
    """
    workers = max(0, int(num_workers))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=workers,
        drop_last=drop_last,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=persistent_workers and workers > 0,
        worker_init_fn=seed_worker if workers > 0 else None,
        generator=generator,
        **options,
    )
