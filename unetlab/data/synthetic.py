"""The demo dataset: circles, squares and triangles on textured noise, in the plain layout.

Made to be learnt quickly by a small U-Net on a CPU, yet not by colour alone: each class has
its own hue (red circles, green squares, blue triangles) with random brightness and tint, and
its own shape, at random sizes, positions and rotations, on a grey background of coarse and fine
noise; shapes may overlap (the later one is on top, in the mask too). Every sample comes from
its own generator seeded by ``(seed, index)``: the same seed gives the same files, byte for
byte, whatever the number of samples.
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

from unetlab.data.io import write_mask
from unetlab.errors import UnetlabError
from unetlab.fs.atomic import make_folder, write_file, write_text

CLASS_NAMES = ("background", "circle", "square", "triangle")
CLASS_COLORS = ((0, 0, 0), (220, 60, 50), (60, 190, 70), (60, 90, 220))
_PREFIX = "shape_"


def make_shapes_dataset(
    root: str | Path,
    n_train: int = 200,
    n_val: int = 50,
    size: int = 128,
    seed: int = 0,
    num_classes: int = 4,
    overwrite: bool = False,
) -> Path:
    """Write ``n_train + n_val`` samples of ``size x size`` pixels under ``root``.

    ``num_classes`` is 2 (circles only), 3 (circles, squares) or 4 (all three shapes); class 0
    is the background. Returns ``root``, a plain-layout dataset with ``classes.txt`` and
    ``splits/{train,val}.txt``.
    """
    root = Path(root)
    if not 2 <= num_classes <= len(CLASS_NAMES):
        raise UnetlabError(f"num_classes must be 2, 3 or 4 for the shapes data, got {num_classes}")
    if size < 16 or n_train < 1 or n_val < 0:
        raise UnetlabError(
            f"need size >= 16, n_train >= 1, n_val >= 0 (got {size}, {n_train}, {n_val})"
        )
    _prepare(root, overwrite)
    ids = [f"{_PREFIX}{i:04d}" for i in range(n_train + n_val)]
    for index, sample_id in enumerate(ids):
        image, mask = shapes_sample(np.random.default_rng([seed, index]), size, num_classes)
        picture = Image.fromarray(image)
        write_file(
            root / "images" / f"{sample_id}.png",
            partial(picture.save, format="PNG", compress_level=1),
            overwrite=overwrite,
        )
        write_mask(root / "masks" / f"{sample_id}.png", mask, CLASS_COLORS[:num_classes], overwrite)
    texts = {
        "classes.txt": "".join(f"{n}\n" for n in CLASS_NAMES[:num_classes]),
        "splits/train.txt": "".join(f"{i}\n" for i in ids[:n_train]),
        "splits/val.txt": "".join(f"{i}\n" for i in ids[n_train:]),
    }
    for name, text in texts.items():
        write_text(root / name, text, overwrite=overwrite)
    return root


def shapes_sample(
    rng: np.random.Generator, size: int, num_classes: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """One ``size x size x 3`` uint8 image and its ``size x size`` uint8 mask."""
    image = _background(rng, size)
    mask = np.zeros((size, size), np.uint8)
    shade = 1.0 + 0.08 * rng.standard_normal((size, size, 1), dtype=np.float32)  # shape texture
    for _ in range(int(rng.integers(2, 6))):
        cls = int(rng.integers(1, num_classes))
        radius = rng.uniform(0.07, 0.18) * size
        centre = rng.uniform(0.5 * radius, size - 0.5 * radius, 2)
        region = Image.new("1", (size, size), 0)
        _draw_shape(ImageDraw.Draw(region), cls, centre, radius, rng.uniform(0, 2 * math.pi))
        inside = np.asarray(region, dtype=bool)
        colour = np.clip(np.array(CLASS_COLORS[cls]) + rng.integers(-25, 26, 3), 0, 255)
        image[inside] = (colour * rng.uniform(0.8, 1.1)).astype(np.float32) * shade[inside]
        mask[inside] = cls
    return np.clip(image, 0, 255).astype(np.uint8), mask


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Grey texture: smooth blobs (a coarse random grid, bicubically enlarged) plus grain."""
    cells = max(2, size // 16)
    coarse = cv2.resize(
        rng.standard_normal((cells, cells)).astype(np.float32),
        (size, size),
        interpolation=cv2.INTER_CUBIC,
    )
    grain = rng.standard_normal((size, size), dtype=np.float32)
    grey = 125 + 30 * coarse + 12 * grain
    tint = rng.uniform(-12, 12, 3).astype(np.float32)
    return grey[:, :, None] + tint


def _draw_shape(
    draw: ImageDraw.ImageDraw, cls: int, centre: np.ndarray, radius: float, angle: float
) -> None:
    cx, cy = float(centre[0]), float(centre[1])
    if cls == 1:
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=1)
        return
    corners = 4 if cls == 2 else 3
    reach = radius * (1.0 if cls == 2 else 1.25)  # similar areas for squares and triangles
    points = [
        (cx + reach * math.cos(angle + 2 * math.pi * k / corners),
         cy + reach * math.sin(angle + 2 * math.pi * k / corners))
        for k in range(corners)
    ]  # fmt: skip
    draw.polygon(points, fill=1)


def _prepare(root: Path, overwrite: bool) -> None:
    existing = [
        path
        for folder in ("images", "masks")
        if (root / folder).is_dir()
        for path in (root / folder).iterdir()
    ]
    if existing and not overwrite:
        raise UnetlabError(
            "this folder holds a dataset already",
            root,
            "choose another folder, or pass --force (overwrite=True) to replace the shapes data",
        )
    for path in existing:
        if path.name.startswith(_PREFIX) and path.suffix == ".png":
            path.unlink()
    for folder in ("images", "masks", "splits"):
        make_folder(root / folder)
