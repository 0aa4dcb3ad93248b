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
from typing import Any, Literal

import torch
from torch import nn
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
    from unetlab.artifacts.card import channels_for_classes
    from unetlab.models import build_model

    outputs = channels_for_classes(num_classes)  # a softmax model of the classes
    model = build_model(
        "unet", outputs, in_channels=in_channels, base=candidate.base, depth=candidate.depth,
        padding="same",
    ).to(device)
    step_seconds, forward_seconds = time_step(
        model, in_channels, outputs, (candidate.patch, candidate.patch), candidate.batch,
        candidate.precision, candidate.channels_last, device, steps=steps, warmup=warmup,
    )
    megapixels = candidate.patch * candidate.patch / 1e6
    return Timing(candidate, step_seconds, forward_seconds / megapixels)


def time_step(
    model: nn.Module,
    in_channels: int,
    out_channels: int,
    patch: tuple[int, int],
    batch: int,
    precision: str,
    channels_last: bool,
    device: torch.device,
    *,
    steps: int = 3,
    warmup: int = 1,
) -> tuple[float, float]:
    """(median seconds of a training step, of a batch-1 eval forward pass) of ``model`` on
    random data. The model is trained on noise: pass a copy if its weights matter."""
    from unetlab.inference.precision import autocast_dtype

    generator = torch.Generator().manual_seed(0)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    # torch's stubs for Module.to lack the memory_format keyword it accepts
    model = model.to(memory_format=layout)  # type: ignore[call-overload]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    dtype = None if precision == "fp32" else autocast_dtype(precision, device)
    images = torch.randn((batch, in_channels, *patch), generator=generator)
    images = images.to(device).contiguous(memory_format=layout)
    from unetlab.artifacts.card import classes_for_channels

    classes = classes_for_channels(out_channels)
    masks = torch.randint(0, classes, (batch, *patch), generator=generator).to(device)
    binary = out_channels == 1  # one sigmoid channel: a BCE step

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = model(images)
            if binary:
                loss = F.binary_cross_entropy_with_logits(logits[:, 0], masks.float())
            else:
                loss = F.cross_entropy(logits, masks[:, : logits.shape[-2], : logits.shape[-1]])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def forward() -> None:
        with torch.inference_mode(), torch.autocast(
            device.type, dtype=dtype, enabled=dtype is not None
        ):
            model(images[:1])

    mode = model.training
    model.train()
    step_seconds = _median_time(step, steps, warmup, device)
    model.eval()
    forward_seconds = _median_time(forward, steps, warmup, device)
    model.train(mode)
    return step_seconds, forward_seconds


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


TINY_STEP_SECONDS = 0.05
"""Steps faster than this are not convolution-bound: reduced precision has nothing to gain."""
REDUCED_MARGIN = 1.10
"""Reduced precision must make the step at least this many times faster to be used."""


def measured_cpu_precision(
    model: nn.Module,
    in_channels: int,
    out_channels: int,
    patch: tuple[int, int],
    batch: int,
    channels_last: bool,
) -> tuple[Literal["fp32", "bf16"], str]:
    """``train.amp: auto`` on a CPU: bf16 when a timed step of (a copy of) ``model`` is at least
    ``REDUCED_MARGIN`` times faster in bf16 than in fp32, else fp32; with the reason."""
    import copy

    device = torch.device("cpu")
    timed = {}
    for precision in ("fp32", "bf16"):
        timed[precision], _ = time_step(
            copy.deepcopy(model), in_channels, out_channels, patch, batch, precision,
            channels_last, device, steps=2, warmup=1,
        )
        if timed["fp32"] < TINY_STEP_SECONDS:
            milliseconds = timed["fp32"] * 1000
            return "fp32", f"a step takes {milliseconds:.0f} ms: too small to gain from bf16"
    faster = timed["bf16"] * REDUCED_MARGIN <= timed["fp32"]
    return ("bf16" if faster else "fp32"), (
        f"measured step fp32 {timed['fp32']:.3f} s, bf16 {timed['bf16']:.3f} s"
    )
