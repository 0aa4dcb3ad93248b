"""The torch Dataset the trainer reads: image, mask and (optionally) the paper's weight map.

Each item is the sample dict of ``docs/architecture.md``: ``image`` (normalised float
``C x H x W``), ``mask`` (int64 ``H x W``, 255 = ignore), ``id`` and, with ``weight_map``
options, ``weight`` (float ``H x W``). A bad file raises the same message ``check_dataset``
gives, naming the file, instead of a collate or loss error far away from the cause.

Randomness: each augmented item draws its augmentation seed from torch's generator, so a run
is reproduced by ``torch.manual_seed`` alone, with or without workers (each worker's torch
generator is seeded by the DataLoader), and a resumed run continues the same stream once the
trainer restores torch's RNG state.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from unetlab import IGNORE_INDEX
from unetlab.data.io import read_image, read_mask
from unetlab.data.layouts import DatasetInfo, dataset_info
from unetlab.data.preprocess import Normalization, image_to_tensor, max_value
from unetlab.data.problems import (
    CHANNELS,
    DatasetProblems,
    Problem,
    mask_values_problem,
    present_values,
    size_problem,
    split_problems,
)
from unetlab.data.resolution import resize_image, resize_mask


@dataclass(frozen=True)
class WeightMapOptions:
    """Options of :func:`unetlab.data.weight_map.unet_weight_map` (paper: w0=10, sigma=5)."""

    w0: float = 10.0
    sigma: float = 5.0
    object_classes: tuple[int, ...] | None = None
    class_balance: bool = True

    @classmethod
    def coerce(cls, value: Any) -> WeightMapOptions | None:
        """None/False -> no weight map; True -> paper defaults; a mapping -> those options."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            options = dict(value)
            if options.get("object_classes") is not None:
                options["object_classes"] = tuple(int(c) for c in options["object_classes"])
            return cls(**options)
        raise TypeError(f"weight_map: expected None, a bool or a mapping, got {value!r}")


class SegmentationDataset(Dataset):
    """Image/mask pairs of one split, validated as they are read."""

    def __init__(
        self,
        info: DatasetInfo,
        ids: Sequence[str],
        *,
        split: str = "all",
        num_classes: int | None = None,
        transform: Callable[..., dict] | None = None,
        normalization: Normalization | None = None,
        weight_map: WeightMapOptions | Mapping | bool | None = None,
        in_channels: int | None = None,
        working_scale: float = 1.0,
    ):
        problems = split_problems(
            split,
            info.split_file(split),
            list(ids),
            info.images,
            info.masks,
            info.image_dir,
            info.mask_dir,
        )
        if len(problems) == 1:
            raise problems[0].to_error()
        if problems:
            raise DatasetProblems(info.root, problems)
        self.info = info
        self.split = split
        self.ids = list(ids)
        self.num_classes = num_classes
        self.transform = transform
        self.normalization = normalization
        self.weight_map = WeightMapOptions.coerce(weight_map)
        self.in_channels = in_channels
        self.working_scale = working_scale
        self._weights: dict[str, np.ndarray] = {}  # per process, so per DataLoader worker

    def __len__(self) -> int:
        return len(self.ids)

    def paths(self, index: int) -> tuple[Path, Path]:
        sample_id = self.ids[index]
        return self.info.images[sample_id][0], self.info.masks[sample_id][0]

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The raw ``H x W x C`` image and ``H x W`` uint8 mask, checked like check_dataset."""
        image_path, mask_path = self.paths(index)
        image, mask = read_image(image_path), read_mask(mask_path)
        problem = size_problem(image_path, mask_path, image.shape[:2], mask.shape)
        if problem is None and self.num_classes is not None:
            problem = mask_values_problem(mask_path, present_values(mask), self.num_classes)
        if problem is None and self.in_channels not in (None, image.shape[2]):
            problem = Problem(
                CHANNELS,
                str(image_path),
                f"image has {image.shape[2]} channel(s) but the model takes {self.in_channels}",
                "convert the dataset's images to one type (all RGB or all grayscale)",
            )
        if problem is not None:
            raise problem.to_error()
        return image, mask

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`read`, at the working resolution (:mod:`unetlab.data.resolution`)."""
        image, mask = self.read(index)
        return (
            resize_image(image, self.working_scale),
            resize_mask(mask, self.working_scale),
        )

    def weight(self, index: int, mask: np.ndarray) -> np.ndarray:
        """The weight map of the un-augmented mask (at the working resolution), computed once
        per id (it is slow)."""
        sample_id = self.ids[index]
        if sample_id not in self._weights:
            from unetlab.data.weight_map import unet_weight_map

            options = self.weight_map
            assert options is not None
            self._weights[sample_id] = unet_weight_map(
                mask,
                w0=options.w0,
                sigma=options.sigma,
                object_classes=options.object_classes,
                class_balance=options.class_balance,
                ignore_index=IGNORE_INDEX,
            ).astype(np.float32)
        return self._weights[sample_id]

    def precompute_weights(self) -> None:
        """Compute every weight map now, in this process.

        Call it before building a DataLoader: forked workers then inherit the maps instead of
        each computing its own, again every epoch when workers are not persistent.
        """
        if self.weight_map is not None:
            for index in range(len(self)):
                self.weight(index, self.load(index)[1])

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, mask = self.load(index)
        weight = self.weight(index, mask) if self.weight_map is not None else None
        if image.dtype != np.uint8:  # uint16: to [0, 1] floats, which every transform accepts
            image = image.astype(np.float32) / max_value(image.dtype)
        if self.transform is not None:
            reseed(self.transform, int(torch.randint(0, 2**62, ()).item()))
            targets = {"image": image, "mask": mask}
            if weight is not None:
                targets["weight"] = weight
            out = self.transform(**targets)
            image, mask, weight = out["image"], out["mask"], out.get("weight")
            if image.ndim == 2:
                image = image[:, :, None]
            if weight is not None:  # padding gave the mask 'ignore'; such pixels weigh nothing
                weight = np.where(mask == IGNORE_INDEX, np.float32(0), weight)
        norm = self.normalization or Normalization.default_for(image.shape[2])
        sample: dict[str, Any] = {
            "image": image_to_tensor(image, norm),
            "mask": torch.from_numpy(np.ascontiguousarray(mask, dtype=np.int64)),
            "id": self.ids[index],
        }
        if weight is not None:
            sample["weight"] = torch.from_numpy(np.ascontiguousarray(weight, dtype=np.float32))
        return sample


def reseed(transform: Any, seed: int) -> None:
    """Give an albumentations pipeline fresh generators seeded by ``seed`` (cheaply)."""
    if hasattr(transform, "set_random_state"):
        transform.set_random_state(np.random.default_rng(seed), random.Random(seed))
    elif hasattr(transform, "set_random_seed"):
        transform.set_random_seed(seed)


def open_dataset(
    root: str | Path,
    split: str,
    *,
    num_classes: int | None = None,
    transform: Callable[..., dict] | None = None,
    normalization: Normalization | None = None,
    weight_map: WeightMapOptions | Mapping | bool | None = None,
    in_channels: int | None = None,
    working_scale: float = 1.0,
) -> SegmentationDataset:
    """The :class:`SegmentationDataset` of ``split`` (``"train"``, ``"val"``, ... or ``"all"``).

    ``num_classes`` defaults to the length of ``classes.txt``; when known, every mask is checked
    against it as it is read. ``transform`` is an albumentations-style callable (see
    :func:`unetlab.data.transforms.build_transform`); ``weight_map`` turns on the ``weight``
    entry (True for the paper's w0=10, sigma=5, or a mapping of
    :class:`WeightMapOptions` fields); ``working_scale`` resizes every image and mask as it is
    read (:mod:`unetlab.data.resolution`).
    """
    info = dataset_info(root)
    return SegmentationDataset(
        info,
        info.ids(split),
        split=split,
        num_classes=num_classes if num_classes is not None else info.num_classes,
        transform=transform,
        normalization=normalization,
        weight_map=weight_map,
        in_channels=in_channels,
        working_scale=working_scale,
    )
