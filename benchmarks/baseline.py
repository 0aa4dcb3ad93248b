"""The plain U-Net baseline: the yardstick every unetlab recipe must beat at equal minutes.

    python benchmarks/baseline.py --data ../shared/datasets/isbi2012 --minutes 20

What a competent user writes in one file, on purpose without unetlab's trainer, loader or losses:
a scratch U-Net (width 16, depth 4, batch norm, transposed-conv up), plain cross-entropy
(255 ignored), Adam at a constant 1e-3, batches of 4 random 256 px crops with flips (plus
vertical flips and 90-degree rotations for one-channel images, which have no "up"), trained
until the wall-clock budget is spent, no validation, no schedule. The final model labels each
image of the val split whole (mirror-padded to a multiple of 16). Scoring goes through
``scoring.score_split``, the same code that scores unetlab's runs in ``quality.py``. Writes the
same JSON record shape as ``quality.py`` (``val_last``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True),
    )


class PlainUNet(nn.Module):
    def __init__(self, cin: int, classes: int, width: int = 16, depth: int = 4):
        super().__init__()
        widths = [width * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList([block(cin, widths[0])])
        self.down.extend(block(widths[i], widths[i + 1]) for i in range(depth))
        self.up = nn.ModuleList(nn.ConvTranspose2d(w * 2, w, 2, 2) for w in reversed(widths[:-1]))
        self.dec = nn.ModuleList(block(w * 2, w) for w in reversed(widths[:-1]))
        self.head = nn.Conv2d(widths[0], classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, down in enumerate(self.down):
            x = down(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips[:-1]), strict=True):
            x = dec(torch.cat([up(x), skip], 1))
        return self.head(x)


def load(root: str, split: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image C x H x W float in [0, 1], mask H x W int64) pairs of a split."""
    from scoring import split_samples

    from unetlab.data.io import read_image, read_mask

    pairs = []
    for _, image_path, mask_path in split_samples(root, split):
        image = read_image(image_path)
        scale = 65535.0 if image.dtype == np.uint16 else 255.0
        array = image.transpose(2, 0, 1).astype(np.float32) / scale
        pairs.append((array, read_mask(mask_path).astype(np.int64)))
    return pairs


def random_batch(pairs, patch: int, batch: int, rotate: bool, rng: np.random.Generator):
    images, masks = [], []
    for _ in range(batch):
        image, mask = pairs[rng.integers(len(pairs))]
        pad_h, pad_w = max(0, patch - mask.shape[0]), max(0, patch - mask.shape[1])
        if pad_h or pad_w:
            image = np.pad(image, ((0, 0), (0, pad_h), (0, pad_w)), mode="reflect")
            mask = np.pad(mask, ((0, pad_h), (0, pad_w)), constant_values=255)
        y = rng.integers(mask.shape[0] - patch + 1)
        x = rng.integers(mask.shape[1] - patch + 1)
        image, mask = image[:, y : y + patch, x : x + patch], mask[y : y + patch, x : x + patch]
        if rng.random() < 0.5:
            image, mask = image[:, :, ::-1], mask[:, ::-1]
        if rotate:
            if rng.random() < 0.5:
                image, mask = image[:, ::-1], mask[::-1]
            k = int(rng.integers(4))
            image, mask = np.rot90(image, k, (1, 2)), np.rot90(mask, k)
        images.append(np.ascontiguousarray(image))
        masks.append(np.ascontiguousarray(mask))
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(masks))


@torch.no_grad()
def label(model: nn.Module, image: np.ndarray, multiple: int = 16) -> np.ndarray:
    scale = 65535.0 if image.dtype == np.uint16 else 255.0
    x = torch.from_numpy(image.transpose(2, 0, 1).astype(np.float32) / scale)[None]
    h, w = x.shape[-2:]
    x = F.pad(x, (0, -w % multiple, 0, -h % multiple), mode="reflect")
    return model(x)[0, :, :h, :w].argmax(0).numpy().astype(np.uint8)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--minutes", type=float, required=True)
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--val-split", default="val")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--tag", default="")
    args = parser.parse_args(argv)

    import platform_info  # benchmarks/ is on sys.path when this runs as a script
    from scoring import class_names, score_split

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    train_pairs = load(args.data, args.train_split)
    channels = train_pairs[0][0].shape[0]
    labelled = max(int(m[m != 255].max()) for _, m in train_pairs) + 1
    classes = max(labelled, len(class_names(args.data, labelled)))
    model = PlainUNet(channels, classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    rotate = channels == 1
    load_before = platform_info.load_average()
    started, steps = time.perf_counter(), 0
    model.train()
    while time.perf_counter() - started < args.minutes * 60:
        images, masks = random_batch(train_pairs, 256, 4, rotate, rng)
        loss = F.cross_entropy(model(images), masks, ignore_index=255)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        steps += 1
    wall = time.perf_counter() - started
    model.eval()
    val = score_split(args.data, args.val_split, lambda image: label(model, image), classes)
    record = {
        "command": "python benchmarks/baseline.py " + " ".join(argv or __import__("sys").argv[1:]),
        "recipe": "plain baseline (benchmarks/baseline.py)",
        "data": str(Path(args.data).resolve()),
        "budget_minutes": args.minutes,
        "seed": args.seed,
        "steps": steps,
        "train_wall_seconds": round(wall, 1),
        "val_last": val,
        **platform_info.record(load_before),
    }
    name = f"baseline-{Path(args.data).resolve().name}-{args.minutes:g}min"
    return platform_info.write_record(record, args.out, name + (f"-{args.tag}" if args.tag else ""))


if __name__ == "__main__":
    main()
