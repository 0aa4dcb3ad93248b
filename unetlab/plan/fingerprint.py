"""A dataset's fingerprint: the few numbers a plan is made from, read once and cached.

nnU-Net plans from a fingerprint of the data (sizes, spacings, intensities); for 2-D images
unetlab reads: how many training images and of what size and channel count, the per-channel
intensity mean and std (the normalisation), each class's pixel share (rare classes), how thin
its structures are and whether its objects nearly touch each other (what the U-Net paper's
border weights are for). Whether images have a canonical "up" is *not* read from the pixels
(it cannot be, reliably): the planner takes it as an option.

Structure width of a class: ``4 * mean(d) - 2`` over its pixels, where ``d`` is each pixel's
Euclidean distance to the nearest pixel of another class (1 at the edge). A straight band ``w``
pixels wide gives ``w`` (within half a pixel), a disc of diameter ``D`` about ``2 D / 3``. A mean
over the area, not a median over the medial axis: ragged outlines (CamVid's sky, trees) add
one-pixel spurs to the axis but few pixels to the area.

Touching: the share of a class's connected objects (8-connected) that have another object of
the same class within ``TOUCH_GAP`` pixels (Chebyshev distance), i.e. that are separated only by
a thin line of another class, as cells by membranes.

The fingerprint is cached as JSON under ``$UNETLAB_CACHE/fingerprints`` (default
``~/.cache/unetlab``), keyed by the dataset's file names, sizes and modification times, never
inside the dataset folder (which may be read-only and is the user's).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

VERSION = 2
TOUCH_GAP = 6
"""Objects of one class closer than this many pixels count as touching (about the paper's
sigma = 5 px of the border weight, below which the weight term is large)."""
MAX_SAMPLED = 64
"""Images read for the pixel statistics (evenly spread over the split)."""


@dataclass(frozen=True)
class ClassStats:
    """One class of the training split."""

    name: str
    pixel_share: float  # of the non-ignored pixels
    width: float | None  # median structure width, pixels (None: class absent)
    objects_per_image: float
    touching: float  # share of objects with a same-class neighbour within TOUCH_GAP px


@dataclass(frozen=True)
class Fingerprint:
    """What the planner knows about a dataset (see the module docstring)."""

    root: str
    split: str
    num_images: int
    num_val_images: int
    channels: int
    bit_depth: int
    median_size: tuple[int, int]  # height, width
    min_size: tuple[int, int]
    max_size: tuple[int, int]
    mean: tuple[float, ...]  # per channel, [0, 1] units
    std: tuple[float, ...]
    classes: tuple[ClassStats, ...]
    ignored_share: float
    version: int = VERSION
    val_pixels: int = 0  # pixels of the val split (validation cost)
    notes: tuple[str, ...] = field(default=())
    val_split: str = "val"
    shared_groups: tuple[str, ...] = ()
    """Sequences (groups of ids, :mod:`unetlab.data.groups`) with images in both splits."""

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Fingerprint:
        values = dict(values)
        values["classes"] = tuple(ClassStats(**c) for c in values["classes"])
        for key in ("median_size", "min_size", "max_size", "mean", "std", "notes",
                    "shared_groups"):
            values[key] = tuple(values[key])
        return cls(**values)

    def describe(self) -> str:
        """A few lines for a person."""
        h, w = self.median_size
        lines = [
            f"{self.num_images} training images ({self.num_val_images} val), median {w}x{h} px "
            f"(from {self.min_size[1]}x{self.min_size[0]} to {self.max_size[1]}x"
            f"{self.max_size[0]}), {self.channels} channel(s), {self.bit_depth}-bit",
            "intensity mean " + ", ".join(f"{m:.3f}" for m in self.mean)
            + " / std " + ", ".join(f"{s:.3f}" for s in self.std),
        ]
        if self.shared_groups:
            lines.append(
                f"val shares {len(self.shared_groups)} sequence(s) with training ("
                + ", ".join(self.shared_groups[:3]) + ("..." if len(self.shared_groups) > 3
                                                       else "") + ")"
            )
        for c in self.classes:
            width = "absent" if c.width is None else f"width {c.width:.1f} px"
            lines.append(
                f"  {c.name}: {100 * c.pixel_share:.1f}% of pixels, {width}, "
                f"{c.objects_per_image:.1f} objects/image, {100 * c.touching:.0f}% touching"
            )
        return "\n".join(lines)


# ---------------------------------------------------------------- measuring one mask


def structure_width(region: np.ndarray) -> float | None:
    """``4 * mean(d) - 2`` over a boolean ``region`` (module docstring); None when empty."""
    total, count = _distance_sum(region)
    return None if count == 0 else 4.0 * total / count - 2.0


def _distance_sum(region: np.ndarray) -> tuple[float, int]:
    """(sum of the distances to the nearest outside pixel, pixel count) of ``region``; the
    image border is not an edge (a band cut by the border keeps its width)."""
    if not region.any():
        return 0.0, 0
    distance = ndimage.distance_transform_edt(np.pad(region, 1, mode="edge"))[1:-1, 1:-1]
    return float(distance[region].sum()), int(region.sum())


def touching_objects(region: np.ndarray, gap: int = TOUCH_GAP) -> tuple[int, int]:
    """(objects, objects with another object within ``gap`` px) of a boolean ``region``."""
    labels, count = ndimage.label(region, structure=np.ones((3, 3), bool))
    if count < 2:
        return count, 0
    size = 2 * gap + 1
    nearest_high = ndimage.maximum_filter(labels, size=size)
    low_source = np.where(labels > 0, labels, count + 1)
    nearest_low = ndimage.minimum_filter(low_source, size=size)
    inside = labels > 0
    other = inside & ((nearest_high != labels) | (nearest_low != labels))
    return count, int(np.unique(labels[other]).size)


def mask_statistics(mask: np.ndarray, num_classes: int) -> dict[str, np.ndarray]:
    """Per-class distance sums, pixel, object and touching-object counts of one mask."""
    distance = np.zeros(num_classes)
    pixels = np.zeros(num_classes)
    objects = np.zeros(num_classes)
    touching = np.zeros(num_classes)
    for c in range(num_classes):
        region = mask == c
        if not region.any():
            continue
        distance[c], pixels[c] = _distance_sum(region)
        objects[c], touching[c] = touching_objects(region)
    return {"distance": distance, "pixels": pixels, "objects": objects, "touching": touching}


# ---------------------------------------------------------------- the dataset


def fingerprint_dataset(
    root: str | Path,
    split: str = "train",
    val_split: str = "val",
    *,
    cache: bool = True,
) -> Fingerprint:
    """Read (or load from the cache) the fingerprint of ``split`` of the dataset at ``root``."""
    from unetlab.data import check_dataset
    from unetlab.data.layouts import dataset_info, is_split_path

    info = dataset_info(root)
    split, val_split = (str(Path(s).expanduser().resolve()) if is_split_path(s) else s
                        for s in (split, val_split))
    ids = info.ids(split)
    val_ids = info.ids(val_split) if info.load_split(val_split) else []
    key = _cache_key(info, split, val_split, ids + val_ids)
    path = _cache_dir() / f"{key}.json"
    if cache and path.is_file():
        try:
            return Fingerprint.from_dict(json.loads(path.read_text()))
        except (ValueError, TypeError, KeyError):
            pass  # a cache from another version: measure again
    splits = (split, val_split) if val_ids else (split,)
    report = check_dataset(root, splits=splits)
    result = _measure(info, report, split, val_split, ids, val_ids)
    if cache:
        _write_cache(path, result)
    return result


def _measure(
    info: Any, report: Any, split: str, val_split: str, ids: list[str], val_ids: list[str]
) -> Fingerprint:
    from unetlab.data.groups import shared_groups
    from unetlab.data.io import read_image, read_mask

    num_classes = report.num_classes
    sizes = [(h, w) for (w, h), n in report.image_sizes[split].items() for _ in range(n)]
    heights, widths = np.array([s[0] for s in sizes]), np.array([s[1] for s in sizes])
    picked = [ids[i] for i in np.linspace(0, len(ids) - 1, min(MAX_SAMPLED, len(ids))).astype(int)]
    sums = sq_sums = None
    pixel_count = 0
    bit_depth = 8
    distance = np.zeros(num_classes)
    class_pixels = np.zeros(num_classes)
    objects = np.zeros(num_classes)
    touching = np.zeros(num_classes)
    for sample_id in dict.fromkeys(picked):
        image = read_image(info.image_path(sample_id))
        bit_depth = 16 if image.dtype == np.uint16 else bit_depth
        scale = 65535.0 if image.dtype == np.uint16 else 255.0
        pixels = image.reshape(-1, image.shape[-1]).astype(np.float64) / scale
        sums = pixels.sum(0) if sums is None else sums + pixels.sum(0)
        sq_sums = (pixels**2).sum(0) if sq_sums is None else sq_sums + (pixels**2).sum(0)
        pixel_count += pixels.shape[0]
        stats = mask_statistics(read_mask(info.mask_path(sample_id)), num_classes)
        distance += stats["distance"]
        class_pixels += stats["pixels"]
        objects += stats["objects"]
        touching += stats["touching"]
    assert sums is not None and sq_sums is not None  # the split has at least one image
    mean = sums / pixel_count
    std = np.sqrt(np.maximum(sq_sums / pixel_count - mean**2, 1e-12))
    shares = report.class_frequencies(split)
    total = report.class_pixels[split].sum() + report.ignored_pixels[split]
    sampled = len(dict.fromkeys(picked))
    classes = tuple(
        ClassStats(
            name=report.class_names[c],
            pixel_share=float(shares[c]),
            width=4.0 * distance[c] / class_pixels[c] - 2.0 if class_pixels[c] else None,
            objects_per_image=float(objects[c] / sampled),
            touching=float(touching[c] / objects[c]) if objects[c] else 0.0,
        )
        for c in range(num_classes)
    )
    val_sizes = report.image_sizes.get(val_split, {}) if val_ids else {}
    val_pixels = int(sum(w * h * n for (w, h), n in val_sizes.items()))
    return Fingerprint(
        root=str(Path(info.root).resolve()),
        split=split,
        num_images=len(ids),
        num_val_images=len(val_ids),
        channels=int(report.in_channels or 1),
        bit_depth=bit_depth,
        median_size=(int(np.median(heights)), int(np.median(widths))),
        min_size=(int(heights.min()), int(widths.min())),
        max_size=(int(heights.max()), int(widths.max())),
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        classes=classes,
        ignored_share=float(report.ignored_pixels[split] / total) if total else 0.0,
        val_pixels=val_pixels,
        val_split=val_split,
        shared_groups=tuple(shared_groups(ids, val_ids)),
    )


def _cache_dir() -> Path:
    return Path(os.environ.get("UNETLAB_CACHE", "~/.cache/unetlab")).expanduser() / "fingerprints"


def _cache_key(info: Any, split: str, val_split: str, ids: list[str]) -> str:
    digest = hashlib.sha256(f"v{VERSION}|{Path(info.root).resolve()}|{split}|{val_split}".encode())
    for sample_id in ids:
        for path in (info.image_path(sample_id), info.mask_path(sample_id)):
            if path is None:
                continue
            stat = path.stat()
            digest.update(f"|{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


def _write_cache(path: Path, fingerprint: Fingerprint) -> None:
    """Best effort: a cache that cannot be written only costs a re-read next time."""
    from contextlib import suppress

    from unetlab.errors import UnetlabError
    from unetlab.fs.atomic import write_text

    with suppress(OSError, UnetlabError):  # the cache is unetlab's own: a stale one is replaced
        write_text(path, json.dumps(fingerprint.to_dict(), indent=1), overwrite=True)
