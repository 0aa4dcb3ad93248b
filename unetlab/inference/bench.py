"""``unetlab bench``: latency and frames per second of a model's forward pass on this machine.

Times the network alone (a random input of the given size, after warm-up runs), on the torch
backend (optionally ``channels_last`` / ``torch.compile``) or ONNX Runtime, and reports the
median and 90th percentile latency with the machine and thread count, so numbers from two
machines or settings can be compared honestly.
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unetlab.errors import UnetlabError


@dataclass
class BenchResult:
    target: str
    backend: str
    input_shape: tuple[int, ...]  # N x C x H x W actually run
    threads: int
    times_s: list[float] = field(repr=False)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def median_ms(self) -> float:
        return 1000 * statistics.median(self.times_s)

    @property
    def p90_ms(self) -> float:
        return 1000 * float(np.percentile(self.times_s, 90))

    @property
    def fps(self) -> float:
        return self.input_shape[0] / statistics.median(self.times_s)

    def format(self) -> str:
        n, c, h, w = self.input_shape
        extras = ", ".join(f"{k}={v}" for k, v in self.settings.items())
        return "\n".join(
            [
                f"model     {self.target}",
                f"backend   {self.backend}" + (f" ({extras})" if extras else ""),
                f"input     batch {n} x {c} x {h} x {w}",
                f"machine   {machine()}, {self.threads} thread(s)",
                f"latency   median {self.median_ms:.1f} ms, p90 {self.p90_ms:.1f} ms "
                f"over {len(self.times_s)} runs",
                f"speed     {self.fps:.2f} images/s (FPS)",
            ]
        )


def machine() -> str:
    """CPU model and core count (and the GPU when CUDA is used)."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} logical cores, {platform.system()}"


def time_runs(run: Callable[[], Any], runs: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def bench(
    target: str,
    *,
    input_shape: tuple[int, int, int] = (3, 512, 512),
    batch: int = 1,
    backend: str = "torch",
    threads: int | None = None,
    channels_last: bool = False,
    compile: bool = False,
    runs: int = 20,
    warmup: int = 3,
    num_classes: int = 2,
    options: dict[str, Any] | None = None,
    device: str = "auto",
    precision: str = "fp32",
) -> BenchResult:
    """Time the forward pass of ``target``: a checkpoint (file or run folder), an ``.onnx``
    file, or a model name (built with ``num_classes`` and ``options``, random weights).

    The input side is rounded up to the nearest size the network accepts. ``precision``
    (torch backend): ``fp32``, ``bf16``/``fp16`` autocast or ``auto`` (bf16 where native).
    """
    if backend not in ("torch", "onnx"):
        raise UnetlabError(f"unknown backend '{backend}'", hint="use torch or onnx")
    if str(target).endswith(".onnx"):
        if backend != "onnx" or channels_last or compile or precision not in ("fp32", "auto"):
            raise UnetlabError(
                "an .onnx file runs on the onnx backend only, as exported (no --channels-last, "
                "--compile or --precision)",
                target,
                "add --backend onnx, or bench the checkpoint for the torch backend",
            )
        return _bench_onnx(Path(target), target, input_shape, batch, threads, runs, warmup)
    model, label = _load_model(target, num_classes, input_shape[0], options or {})
    if backend == "onnx":
        return _bench_exported(model, label, input_shape, batch, threads, runs, warmup)
    return _bench_torch(
        model, label, input_shape, batch, threads, channels_last, compile, runs, warmup, device,
        precision,
    )


def _load_model(target: str, num_classes: int, in_channels: int, options: dict[str, Any]):
    from unetlab.engine.checkpoint import load_checkpoint, model_from_checkpoint
    from unetlab.models import build_model, list_models

    if target in list_models():
        model = build_model(target, num_classes, in_channels=in_channels, **options)
        described = ", ".join(f"{k}={v}" for k, v in options.items())
        return model.eval(), f"{target}({described})" if described else target
    if not Path(target).exists():
        raise UnetlabError(
            "neither a checkpoint, a run folder, an .onnx file nor a model name",
            target,
            f"model names: {', '.join(list_models())}",
        )
    checkpoint = load_checkpoint(target)
    return model_from_checkpoint(checkpoint), f"{target} ({checkpoint['model']['name']})"


def _legal_shape(geometry, input_shape, batch) -> tuple[int, int, int, int]:
    c, h, w = input_shape
    return (
        batch,
        c,
        *(geometry.input_size(geometry.output_size(s - geometry.margin)) for s in (h, w)),
    )


def _bench_torch(
    model, label, input_shape, batch, threads, channels_last, compile, runs, warmup, device,
    precision,
):
    import torch

    from unetlab.inference.forward import model_geometry
    from unetlab.inference.precision import autocast_dtype
    from unetlab.inference.predictor import resolve_device

    if threads:
        torch.set_num_threads(threads)
    device = resolve_device(device)
    dtype = autocast_dtype(precision, device)
    shape = _legal_shape(model_geometry(model), input_shape, batch)
    if shape[1] != getattr(model, "in_channels", shape[1]):
        raise UnetlabError(
            f"input has {shape[1]} channels but the model expects {model.in_channels}",
            hint=f"use --input {model.in_channels}x{shape[2]}x{shape[3]}",
        )
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device).to(memory_format=memory_format)
    runner = torch.compile(model) if compile else model
    x = torch.randn(*shape, device=device).contiguous(memory_format=memory_format)

    def run() -> None:
        with (
            torch.inference_mode(),
            torch.autocast(device.type, dtype=dtype, enabled=dtype is not None),
        ):
            runner(x)
        if device.type == "cuda":
            torch.cuda.synchronize()

    times = time_runs(run, runs, warmup + (2 if compile else 0))
    settings = {
        "device": device.type,
        "channels_last": channels_last,
        "compile": compile,
        "precision": str(dtype).removeprefix("torch.") if dtype is not None else "fp32",
        "torch": torch.__version__,
    }
    return BenchResult(label, "torch", shape, torch.get_num_threads(), times, settings)


def _bench_exported(model, label, input_shape, batch, threads, runs, warmup) -> BenchResult:
    """Export a torch model to a temporary ONNX file and time it with ONNX Runtime."""
    import torch

    from unetlab.export.onnx import DEFAULT_OPSET, write_graph
    from unetlab.inference.forward import model_geometry

    shape = _legal_shape(model_geometry(model), input_shape, batch)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        write_graph(model, torch.randn(*shape), path, DEFAULT_OPSET)
        return _bench_onnx(path, label, input_shape, batch, threads, runs, warmup, shape)


def _bench_onnx(path, label, input_shape, batch, threads, runs, warmup, shape=None):
    import onnxruntime as ort

    from unetlab.export.onnx_runtime import open_session, read_metadata
    from unetlab.inference.grid import Geometry

    session = open_session(path, threads)
    if shape is None:
        geometry = Geometry.from_dict(read_metadata(path, session)["geometry"])
        shape = _legal_shape(geometry, input_shape, batch)
    x = np.random.default_rng(0).uniform(0, 255, shape).astype(np.float32)
    feed = {session.get_inputs()[0].name: x}

    def run() -> None:
        session.run(None, feed)

    times = time_runs(run, runs, warmup)
    used = threads or os.cpu_count()
    settings = {"onnxruntime": ort.__version__}
    return BenchResult(str(label), "onnx", shape, int(used), times, settings)
