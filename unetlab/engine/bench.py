"""``unetlab bench``: latency and frames per second of what ``unetlab predict`` runs, here.

The target is opened exactly as ``predict`` opens it (:func:`unetlab.inference.open_model`:
backend by the file's ending, NHWC layout on CPUs, the same precision default), and what is
timed is the predictor's own call on random images of the given size: preparation, padding (or
tiles above the tile size), the forward pass and the labels, after warm-up runs. The median and
90th percentile latency are reported with the machine, the thread count and the settings the
predictor chose, so numbers from two machines or settings can be compared honestly.
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from unetlab.errors import UnetlabError
from unetlab.inference.open import DEFAULT_PRECISION, choose_backend


@dataclass
class BenchResult:
    target: str
    backend: str
    input_shape: tuple[int, ...]  # N x C x H x W of the images predicted
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
        extras = ", ".join(f"{k}={v}" for k, v in self.settings.items() if k != "backend")
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
    backend: str = "auto",
    threads: int | None = None,
    channels_last: bool | None = None,
    compile: bool = False,
    runs: int = 20,
    warmup: int = 3,
    out_channels: int = 2,
    options: dict[str, Any] | None = None,
    device: str = "auto",
    precision: str = DEFAULT_PRECISION,
    tile: int | None = None,
) -> BenchResult:
    """Time ``predict`` on ``batch`` random images of ``input_shape`` (C x H x W) with
    ``target``: a checkpoint (file or run folder), an ``.onnx`` file, or a model name (built
    with ``out_channels`` output channels and ``options``, random weights).

    The other arguments are ``predict``'s: ``backend`` (``auto``: by the file's ending; ``onnx``
    for a checkpoint or model name times a temporary export), ``device``, ``precision``,
    ``channels_last`` (None: NHWC on CPUs), ``compile``, ``threads``, ``tile``.
    """
    from unetlab.threads import configure_threads

    configure_threads(threads)  # the wait policy, before torch loads (see unetlab.threads)
    with ExitStack() as stack:
        predictor, label = open_target(
            target, backend, device, precision, channels_last, compile, threads,
            out_channels, input_shape[0], options or {}, batch, tile, stack,
        )
        configure_threads(threads)  # the count, now torch is loaded (a model name's path)
        channels, height, width = input_shape
        if channels != predictor.in_channels:
            raise UnetlabError(
                f"input has {channels} channels but the model expects {predictor.in_channels}",
                hint=f"use --input {predictor.in_channels}x{height}x{width}",
            )
        rng = np.random.default_rng(0)
        images = [rng.integers(0, 256, (height, width, channels), np.uint8) for _ in range(batch)]
        settings = dict(predictor.settings)

        def run() -> None:
            predictor.predict_batch(images)

        times = time_runs(run, runs, warmup + (2 if compile else 0))
        used = _threads(settings.get("backend"), threads)
        return BenchResult(
            label, str(settings.pop("backend")), (batch, *input_shape), used, times, settings
        )


@dataclass(frozen=True)
class RunOptions:
    """How the forward pass runs (``predict``'s flags of the same names)."""

    channels_last: bool | None
    compile: bool
    threads: int | None

    def open(
        self, path: str | Path, device: str, precision: str, backend: str, options: dict
    ) -> Any:
        from unetlab.inference.open import open_model

        return open_model(
            path,
            device,
            precision,
            backend=backend,
            channels_last=self.channels_last,
            compile=self.compile,
            threads=self.threads,
            **options,
        )


def open_target(
    target: str,
    backend: str,
    device: str,
    precision: str,
    channels_last: bool | None,
    compile: bool,
    threads: int | None,
    out_channels: int,
    in_channels: int,
    options: dict[str, Any],
    batch: int,
    tile: int | None,
    stack: ExitStack,
) -> tuple[Any, str]:
    """The predictor ``predict`` would run for ``target`` (and how to name it)."""
    from unetlab.models import list_models

    predict_options: dict[str, Any] = {"batch_size": batch, "progress": False}
    if tile is not None:
        predict_options["tile"] = tile
    run_options = RunOptions(channels_last, compile, threads)
    if target in list_models():
        return _open_model_name(
            target, backend, device, precision, out_channels, in_channels, options,
            predict_options, run_options, stack,
        )
    if not Path(target).exists():
        raise UnetlabError(
            "neither a checkpoint, a run folder, an .onnx file nor a model name",
            target,
            f"model names: {', '.join(list_models())}",
        )
    if backend == "onnx" and choose_backend(target) == "torch":  # time an export of it
        from unetlab.export.onnx import export_onnx

        folder = stack.enter_context(tempfile.TemporaryDirectory())
        exported = export_onnx(target, Path(folder) / "model.onnx").path
        predictor = run_options.open(exported, device, precision, "auto", predict_options)
        return predictor, f"{target} (as ONNX)"
    predictor = run_options.open(target, device, precision, backend, predict_options)
    architecture = predictor.card.architecture if predictor.card else "?"
    return predictor, f"{target} ({architecture})"


def _open_model_name(
    name, backend, device, precision, out_channels, in_channels, options, predict_options,
    run_options, stack,
) -> tuple[Any, str]:
    from unetlab.artifacts.card import default_class_names
    from unetlab.data.preprocess import Normalization
    from unetlab.inference.core import PredictOptions
    from unetlab.inference.predictor import Predictor
    from unetlab.models import build_model

    model = build_model(name, out_channels, in_channels=in_channels, **options).eval()
    described = ", ".join(f"{k}={v}" for k, v in options.items())
    label = f"{name}({described})" if described else name
    normalization = Normalization.default_for(in_channels)
    if backend == "onnx":
        from unetlab.export.onnx import export_model
        folder = stack.enter_context(tempfile.TemporaryDirectory())
        report = export_model(
            model,
            Path(folder) / "model.onnx",
            spec=cast(dict[str, Any], model.spec),
            normalization=normalization,
        )
        exported = run_options.open(report.path, device, precision, "auto", predict_options)
        return exported, label
    if backend not in ("auto", "torch"):
        raise UnetlabError(f"unknown backend '{backend}'", hint="use auto, torch or onnx")
    predictor = Predictor(
        model,
        normalization,
        default_class_names(out_channels),
        device=device,
        channels_last=run_options.channels_last,
        compile=run_options.compile,
        precision=precision,
        options=PredictOptions(**predict_options),
    )
    return predictor, label


def _threads(backend: Any, threads: int | None) -> int:
    if backend == "torch":
        import torch

        return torch.get_num_threads()
    return int(threads or os.cpu_count() or 1)
