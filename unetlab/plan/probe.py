"""Probe the machine: time real training steps of candidate networks, never guess from flags.

A CPU that lists ``avx512_bf16`` may still run bf16 convolutions slower than fp32 (no AMX, an
old oneDNN), and NHWC may or may not beat NCHW: the only reliable answer is a stopwatch. Each
candidate builds the network the run would build, runs ``warmup`` untimed and ``steps`` timed
optimizer steps on random data of the run's patch and batch size (forward, loss, backward,
AdamW step, in the candidate's precision and memory layout), then times a batch-1 forward pass
in eval mode for the cost of validation and prediction. Medians are kept.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.nn import functional as F


@dataclass(frozen=True)
class Candidate:
    """One network and step shape to time."""

    base: int
    depth: int
    patch: int
    batch: int
    precision: str  # "fp32", "bf16" or "fp16" (autocast)
    channels_last: bool

    def label(self) -> str:
        layout = "NHWC" if self.channels_last else "NCHW"
        return (
            f"unet base {self.base} depth {self.depth}, {self.batch} x {self.patch} px, "
            f"{self.precision} {layout}"
        )


@dataclass(frozen=True)
class Timing:
    """Measured cost of a candidate: one training step, and inference per megapixel."""

    candidate: Candidate
    step_seconds: float
    forward_seconds_per_mpixel: float

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self.candidate), "step_seconds": self.step_seconds,
                "forward_seconds_per_mpixel": self.forward_seconds_per_mpixel}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Timing:
        values = dict(values)
        step = values.pop("step_seconds")
        forward = values.pop("forward_seconds_per_mpixel")
        return cls(Candidate(**values), step, forward)


def time_candidate(
    candidate: Candidate,
    in_channels: int,
    num_classes: int,
    device: torch.device,
    *,
    steps: int = 3,
    warmup: int = 1,
) -> Timing:
    """Time ``candidate`` on ``device`` (see the module docstring)."""
    from unetlab.inference.precision import autocast_dtype
    from unetlab.models import build_model

    generator = torch.Generator().manual_seed(0)
    model = build_model(
        "unet", num_classes, in_channels=in_channels, base=candidate.base,
        depth=candidate.depth, padding="same",
    ).to(device)
    layout = torch.channels_last if candidate.channels_last else torch.contiguous_format
    model = model.to(memory_format=layout)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    dtype = None if candidate.precision == "fp32" else autocast_dtype(candidate.precision, device)
    shape = (candidate.batch, in_channels, candidate.patch, candidate.patch)
    images = torch.randn(shape, generator=generator).to(device).contiguous(memory_format=layout)
    masks = torch.randint(0, num_classes, (candidate.batch, candidate.patch, candidate.patch),
                          generator=generator).to(device)

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(model(images), masks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def forward() -> None:
        with torch.inference_mode(), torch.autocast(
            device.type, dtype=dtype, enabled=dtype is not None
        ):
            model(images[:1])

    model.train()
    step_seconds = _median_time(step, steps, warmup, device)
    model.eval()
    forward_seconds = _median_time(forward, steps, warmup, device)
    megapixels = candidate.patch * candidate.patch / 1e6
    return Timing(candidate, step_seconds, forward_seconds / megapixels)


def _median_time(fn: Any, repeats: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        started = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
