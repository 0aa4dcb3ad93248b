"""Speed of the training data loader alone: batches/s and images/s, no model.

Compare the numbers with the trainer's steps/s: if the loader delivers fewer batches per second
than training consumes, training waits on data (add workers, or drop the costly options).

For each mode (plain augmentation, + elastic deformation, + weight maps, both) and each worker
count it builds the dataset as training does (``open_dataset`` + ``build_transform`` +
``make_loader``), computes the weight maps once up front (``precompute_weights``, timed as
"maps s"), draws ``--warmup`` batches (worker start-up) and times the next ``--batches``.

    python benchmarks/loader.py ../shared/datasets/isbi2012 --patch 256 --batch-size 4
    python benchmarks/loader.py data/shapes --patch 128 --batch-size 16
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch
from platform_info import cpu_model  # benchmarks/ is on sys.path when run as a script
from torch.utils.data import RandomSampler

from unetlab.data.datasets import open_dataset
from unetlab.data.loader import make_loader
from unetlab.data.transforms import AugmentConfig, build_transform

MODES = {
    "plain": (False, False),
    "elastic": (True, False),
    "weights": (False, True),
    "elastic+weights": (True, True),
}


def machine() -> str:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return (
        f"{cpu_model()}; {os.cpu_count()} logical cores ({usable} usable); load average {load}; "
        f"Python {platform.python_version()}, torch {torch.__version__}"
    )


def measure(args: argparse.Namespace, mode: str, workers: int) -> tuple[float, float, float]:
    """(seconds to precompute weight maps, seconds for the warm-up batches, batches/s after)."""
    elastic, weights = MODES[mode]
    config = AugmentConfig(
        vflip=True, rotate90=True, elastic=1.0 if elastic else 0.0, elastic_sigma=args.sigma
    )
    dataset = open_dataset(
        args.dataset,
        args.split,
        transform=build_transform(config, args.patch, train=True),
        weight_map={"object_classes": args.object_classes} if weights else None,
    )
    start = time.perf_counter()
    dataset.precompute_weights()  # as the trainer does: workers inherit the maps
    precompute = time.perf_counter() - start
    total = args.batch_size * (args.warmup + args.batches)
    sampler = RandomSampler(dataset, replacement=False, num_samples=total)
    torch.manual_seed(0)
    loader = make_loader(
        dataset, args.batch_size, shuffle=False, num_workers=workers, sampler=sampler
    )
    start = time.perf_counter()
    batches = iter(loader)
    for _ in range(args.warmup):
        next(batches)
    warm = time.perf_counter()
    for _ in range(args.batches):
        next(batches)
    end = time.perf_counter()
    return precompute, warm - start, args.batches / (end - warm)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--split", default="train")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--patch", type=int, default=256)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--warmup", type=int, default=6, help="batches before timing")
    parser.add_argument("--batches", type=int, default=20, help="timed batches")
    parser.add_argument("--sigma", type=float, default=10.0, help="elastic smoothness, px")
    parser.add_argument("--object-classes", type=int, nargs="+", default=[1])
    args = parser.parse_args()

    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"machine: {machine()}")
    print(
        f"data: {args.dataset} split={args.split}, batch {args.batch_size}, patch {args.patch}, "
        f"{args.warmup} warm-up + {args.batches} timed batches"
    )
    print(
        f"{'mode':<17}{'workers':>8}{'maps s':>8}{'warm-up s':>11}{'batches/s':>11}{'images/s':>10}"
    )
    for mode in args.modes:
        for workers in args.workers:
            maps, warmup, rate = measure(args, mode, workers)
            print(
                f"{mode:<17}{workers:>8}{maps:>8.2f}{warmup:>11.2f}{rate:>11.2f}"
                f"{rate * args.batch_size:>10.1f}",
                flush=True,
            )
    print(f"load average after: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
