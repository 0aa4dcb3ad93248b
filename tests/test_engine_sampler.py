"""Training samples: every pass of ``data.repeat`` over an image draws its own augmentation."""

from __future__ import annotations

from collections import defaultdict

import torch
from torch.utils.data import Dataset

from unetlab.engine.distributed import DistContext
from unetlab.engine.loaders import train_loader


class RandomCrops(Dataset):
    """Stands in for an augmented dataset: each item draws from torch's (seeded) generator."""

    def __len__(self) -> int:
        return 3

    def __getitem__(self, index: int) -> dict:
        return {"index": index, "draw": torch.rand(())}


def epoch_draws(repeat: int, epoch: int = 0) -> dict[int, list[float]]:
    context = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    loader, sampler = train_loader(RandomCrops(), 1, context, seed=7, num_workers=0,
                                   repeat=repeat)
    sampler.set_epoch(epoch)
    draws: dict[int, list[float]] = defaultdict(list)
    for batch in loader:
        draws[int(batch["index"])].append(float(batch["draw"]))
    return draws


def test_each_repeat_of_an_image_is_augmented_anew() -> None:
    draws = epoch_draws(repeat=4)
    assert sorted(draws) == [0, 1, 2]
    for index, values in draws.items():
        assert len(values) == 4, index
        assert len(set(values)) == 4, f"image {index} got the same augmentation twice: {values}"


def test_draws_are_reproducible_and_change_with_the_epoch() -> None:
    assert epoch_draws(repeat=2) == epoch_draws(repeat=2)
    assert epoch_draws(repeat=2, epoch=0) != epoch_draws(repeat=2, epoch=1)


def test_first_pass_keeps_the_single_pass_seeds() -> None:
    """repeat=1 runs (and their resumes) draw what they drew before repeats got own seeds."""
    single = epoch_draws(repeat=1)
    repeated = epoch_draws(repeat=3)
    for index, (value,) in single.items():
        assert value in repeated[index]
