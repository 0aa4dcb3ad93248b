"""Shared test fixtures: real datasets beside the checkout, tiny seeded randomness."""

from __future__ import annotations

import os
from pathlib import Path

# Tiny test models run 8-30x faster on one thread than with OpenMP spinning on a busy 2-core
# machine; subprocesses started by tests inherit this.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pytest
import torch
from hypothesis import settings

# CI=true (set by most CI services and by .ci/run): the same examples on every run, so a red
# build points at a change, not at a lucky draw (HYPOTHESIS_PROFILE picks another profile).
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") == "true" else "default")
)

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

SHARED_DATASETS = Path(
    os.environ.get(
        "UNETLAB_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"
    )
)


def shared_dataset(name: str) -> Path:
    """Path of a real dataset in ../shared/datasets, or skip the test with the reason."""
    path = SHARED_DATASETS / name
    if not path.is_dir():
        pytest.skip(f"real dataset '{name}' not found at {path} (set UNETLAB_DATASETS)")
    return path


@pytest.fixture(scope="session")
def _test_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("unetlab-cache")


@pytest.fixture(autouse=True)
def _private_cache(_test_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fingerprints and downloads that tests cause go to a temporary cache, never the user's
    ``~/.cache/unetlab`` (a test names its own with ``monkeypatch.setenv``)."""
    monkeypatch.setenv("UNETLAB_CACHE", str(_test_cache))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture
def rng() -> np.random.Generator:
    """A generator seeded for this test alone: its data never depends on which tests ran
    before (a module-level generator's draws do)."""
    return np.random.default_rng(0)


@pytest.fixture
def one_thread():
    """Tiny convolutions run fastest on one thread; restore the setting for other tests."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- stand-in networks

from torch import nn  # noqa: E402

from unetlab.artifacts.geometry import Geometry  # noqa: E402
from unetlab.data.preprocess import Normalization, image_to_tensor  # noqa: E402

RGB_NORM = Normalization.default_for(3)
TINY_UNET = {"base": 4, "depth": 2}


class PoolNet(nn.Module):
    """Same-padding stand-in with one 2x2 pooling level (needs even sides; receptive radius
    4 px)."""

    size_multiple = 2

    def __init__(self, in_channels: int = 3, classes: int = 3, padding_mode: str = "zeros"):
        super().__init__()
        self.down = nn.Conv2d(in_channels, 4, 3, padding=1, padding_mode=padding_mode)
        self.up = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(4, 4, 1))
        self.head = nn.Conv2d(4 + in_channels, classes, 3, padding=1, padding_mode=padding_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        deep = self.up(torch.relu(nn.functional.max_pool2d(self.down(x), 2)))
        return self.head(torch.cat([deep, x], dim=1))


class ValidNet(nn.Module):
    """Valid-padding stand-in: two unpadded 3x3 convs shrink each side by 4 (its ``geometry``
    says so, as an export's does)."""

    padding = "valid"
    geometry = Geometry(multiple=1, margin=4, min_output=1)

    def __init__(self, in_channels: int = 3, classes: int = 2):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, 4, 3), nn.ReLU(), nn.Conv2d(4, classes, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def disk_image(
    seed: int, side: int = 64, classes: int = 2, width: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A noisy bright disk on a dark background (uint8 RGB) and its mask: 0/1, or with
    ``classes=3`` a darker core of class 2 inside the disk."""
    rng = np.random.default_rng(seed)
    width = width or side
    yy, xx = np.mgrid[:side, :width]
    cy, cx = rng.uniform(0.3, 0.7, 2) * (side, width)
    radius = rng.uniform(0.15, 0.3) * min(side, width)
    distance = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    mask = (distance < radius).astype(np.uint8)
    if classes == 3:
        mask[distance < radius / 2] = 2
    brightness = np.array([40, 200, 110], np.float64)[mask]
    image = brightness[:, :, None] + rng.normal(0, 12, (side, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8), mask


def trained_tiny_model(out_channels: int = 2, steps: int = 30) -> nn.Module:
    """A base-4 U-Net fitted for a few steps to the disks (one sigmoid channel: BCE; else CE),
    so that its decisions mean something."""
    from unetlab.artifacts.card import classes_for_channels
    from unetlab.models import build_model

    classes = classes_for_channels(out_channels)
    model = build_model("unet", out_channels, in_channels=3, **TINY_UNET)
    pairs = [disk_image(seed, classes=classes) for seed in range(4)]
    x = torch.stack([image_to_tensor(image, RGB_NORM) for image, _ in pairs])
    y = torch.stack([torch.from_numpy(mask.astype(np.int64)) for _, mask in pairs])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        logits = model(x)
        if out_channels == 1:
            loss = nn.functional.binary_cross_entropy_with_logits(logits[:, 0], y.float())
        else:
            loss = nn.functional.cross_entropy(logits, y)
        loss.backward()
        optimizer.step()
    return model.eval()


def save_model_checkpoint(
    model: nn.Module,
    path: Path,
    class_names: list[str] | None = None,
    class_colors: list[list[int]] | None = None,
    normalization: Normalization = RGB_NORM,
    spec: dict | None = None,
) -> Path:
    """A unetlab checkpoint of ``model`` (its ``spec`` unless one is given)."""
    from unetlab.engine.checkpoint import save_checkpoint

    data: dict = {**normalization.to_dict()}
    if class_names is not None:
        data["class_names"] = class_names
    if class_colors is not None:
        data["class_colors"] = class_colors
    payload = {"model": spec or model.spec, "state_dict": model.state_dict(), "data": data}
    return save_checkpoint(payload, path)
