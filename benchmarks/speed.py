"""Side-by-side speed of unetlab's U-Net against the same architecture from registry packages.

    python benchmarks/speed.py [--quick] [--repeats N] [--threads 2] [--out results.json]

Measured in ONE run on this machine, for each task:

- ``latency``: batch 1 at 512 x 512, forward only (inference mode);
- ``throughput``: batch 8 at 512 x 512 (images per second);
- ``train``: one training step, batch 4 at 256 x 256, Adam + cross-entropy (fp32, and a
  bf16-autocast step for unetlab).

Candidates: unetlab's ``unet`` (base 64, 2 classes, 3 channels) on torch (eager NCHW, eager
channels_last, channels_last with batch norm folded into the convolutions, bf16 autocast,
optionally ``torch.compile``) and on ONNX Runtime (fp32, and int8 from
:func:`unetlab.export.quantize.quantize_onnx`); MONAI's ``BasicUNet`` with the same widths
(64..1024, 2x2 transposed-conv upsampling), with batch norm + ReLU like unetlab and with its
shipped defaults (instance norm, LeakyReLU); ``segmentation_models_pytorch.Unet`` when it can
be imported (its failure reason is recorded otherwise; here: no CPU torchvision). A
``ceiling`` candidate times a large fp32 matmul and a large convolution: the machine's
achievable GFLOP/s in the same conditions.

How it stays honest on a shared, noisy machine:

- every candidate lives in its OWN fresh worker process (so its peak RSS is its own: the
  ``ru_maxrss`` high-water mark, reported with the RSS after loading), and the coordinator
  runs the candidates round-robin (order rotated each round), one timed call at a time, so slow
  and fast phases of background load hit every candidate alike;
- each worker makes one untimed call before the rounds (kernel selection, weight packing,
  memory arenas: ``first_call_s``); medians over rounds, ratios to the fastest peer;
- before and after every round: ``os.getloadavg()`` and a top-like sample from ``/proc``:
  how many cores other processes used during the round, and the busiest of them.
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import datetime as dt
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

PEER_BASIC = "monai BasicUNet"
SMP_REASON_HINT = (
    "segmentation_models_pytorch imports timm, which imports torchvision; PyPI's torchvision "
    "wheels are CUDA builds whose native library needs libtorch_cuda.so, absent from the CPU "
    "torch wheel, and there is no CPU torchvision on PyPI"
)


# ---------------------------------------------------------------------------------------------
# Sizes and candidates


@dataclass(frozen=True)
class Sizes:
    side: int = 512
    batch: int = 8
    train_side: int = 256
    train_batch: int = 4
    base: int = 64
    matmul: int = 4096
    conv_channels: int = 128
    conv_side: int = 256

    @classmethod
    def quick(cls) -> Sizes:
        return cls(64, 2, 64, 2, 8, 512, 32, 64)


@dataclass
class Candidate:
    """One thing to time: how a worker builds it and what it is."""

    name: str
    task: str  # latency | throughput | train | ceiling
    group: str  # unetlab | peer | ceiling
    kind: str  # torch | onnx | ceiling
    model: str = "unetlab"  # unetlab | basic_bn | basic_default | smp
    precision: str = "fp32"
    channels_last: bool = False
    fold_bn: bool = False
    compile: bool = False
    cast_bf16: bool = False  # bf16 weights and input (no autocast): inference only
    onnx_path: str = ""
    note: str = ""


def candidates(tasks: list[str], onnx_fp32: str, onnx_int8: str, compile_: bool) -> list[Candidate]:
    c: list[Candidate] = []
    for task in ("latency", "throughput"):
        if task not in tasks:
            continue
        full = task == "latency"  # the throughput task keeps the informative subset
        if full:
            c.append(Candidate("unetlab torch eager NCHW", task, "unetlab", "torch"))
        c.append(Candidate("unetlab torch eager channels_last", task, "unetlab", "torch",
                           channels_last=True))  # fmt: skip
        c.append(Candidate("unetlab torch channels_last + BN folded", task, "unetlab", "torch",
                           channels_last=True, fold_bn=True))  # fmt: skip
        if compile_:
            c.append(Candidate("unetlab torch.compile channels_last", task, "unetlab", "torch",
                               channels_last=True, compile=True))  # fmt: skip
        c.append(Candidate("unetlab torch bf16 autocast channels_last", task, "unetlab",
                           "torch", precision="bf16", channels_last=True))  # fmt: skip
        c.append(Candidate("unetlab torch bf16 weights channels_last + BN folded", task,
                           "unetlab", "torch", precision="bf16", channels_last=True,
                           fold_bn=True, cast_bf16=True))  # fmt: skip
        c.append(Candidate("unetlab ONNX Runtime fp32", task, "unetlab", "onnx",
                           onnx_path=onnx_fp32))  # fmt: skip
        c.append(Candidate("unetlab ONNX Runtime int8", task, "unetlab", "onnx", precision="int8",
                           onnx_path=onnx_int8))  # fmt: skip
        c.append(Candidate(f"{PEER_BASIC} (BN, ReLU) eager NCHW", task, "peer", "torch",
                           model="basic_bn"))  # fmt: skip
        c.append(Candidate(f"{PEER_BASIC} (BN, ReLU) eager channels_last", task, "peer", "torch",
                           model="basic_bn", channels_last=True))  # fmt: skip
        if full:
            c.append(Candidate(f"{PEER_BASIC} (defaults: instance norm) eager NCHW", task, "peer",
                               "torch", model="basic_default"))  # fmt: skip
            c.append(Candidate("smp Unet (resnet34) eager NCHW", task, "peer", "torch",
                               model="smp"))  # fmt: skip
            c.append(Candidate("ceiling: fp32 matmul + conv", task, "ceiling", "ceiling"))
    if "train" in tasks:
        t = "train"
        c.append(Candidate("unetlab fp32 NCHW", t, "unetlab", "torch"))
        c.append(Candidate("unetlab fp32 channels_last", t, "unetlab", "torch", channels_last=True))
        c.append(Candidate("unetlab bf16 autocast NCHW", t, "unetlab", "torch", precision="bf16"))
        c.append(Candidate("unetlab bf16 autocast channels_last", t, "unetlab", "torch",
                           precision="bf16", channels_last=True))  # fmt: skip
        c.append(Candidate(f"{PEER_BASIC} (BN, ReLU) fp32 NCHW", t, "peer", "torch",
                           model="basic_bn"))  # fmt: skip
        c.append(Candidate(f"{PEER_BASIC} (BN, ReLU) fp32 channels_last", t, "peer", "torch",
                           model="basic_bn", channels_last=True))  # fmt: skip
        c.append(Candidate("smp Unet (resnet34) fp32 NCHW", t, "peer", "torch", model="smp"))
    return c


# ---------------------------------------------------------------------------------------------
# Worker: one candidate in its own process; lines of JSON on stdin/stdout


def build_torch_model(name: str, base: int):
    """The network of a candidate (random weights: speed does not depend on their values)."""
    import torch

    torch.manual_seed(0)
    widths = tuple(base * 2**i for i in range(5))
    if name == "unetlab":
        from unetlab.models import build_model

        return build_model("unet", 2, in_channels=3, base=base)
    if name in ("basic_bn", "basic_default"):
        from monai.networks.nets import BasicUNet

        options = {"norm": "batch", "act": "relu"} if name == "basic_bn" else {}
        return BasicUNet(spatial_dims=2, in_channels=3, out_channels=2,
                         features=(*widths, base), upsample="deconv", **options)  # fmt: skip
    if name == "smp":
        import segmentation_models_pytorch as smp

        return smp.Unet("resnet34", encoder_weights=None, in_channels=3, classes=2)
    raise ValueError(name)


def fold_batch_norm(model):
    """Fold every BatchNorm2d that directly follows a Conv2d in an nn.Sequential into the conv
    (inference only): one pass over the activations less per conv, same outputs."""
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for first, second in itertools.pairwise(names):
            conv, norm = module._modules[first], module._modules[second]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                module._modules[first] = fuse_conv_bn_eval(conv, norm)
                module._modules[second] = nn.Identity()
    return model


def forward_flops(model, shape: tuple[int, ...]) -> int:
    """Forward FLOPs (2 x multiply-accumulates of convs/matmuls) at ``shape`` = N x C x H x W."""
    from unetlab.models.summary import summarize

    return summarize(model, shape[1:]).flops * shape[0]


class Runner:
    """What a worker times: ``setup()`` once, then ``run()`` per round."""

    def __init__(self, cand: Candidate, sizes: Sizes, threads: int):
        self.cand, self.sizes, self.threads = cand, sizes, threads
        self.flops = 0
        self.parts: dict[str, float] = {}

    def shape(self) -> tuple[int, int, int, int]:
        s = self.sizes
        if self.cand.task == "train":
            return (s.train_batch, 3, s.train_side, s.train_side)
        return (1 if self.cand.task == "latency" else s.batch, 3, s.side, s.side)

    def setup(self) -> dict[str, Any]:
        kind = self.cand.kind
        return getattr(self, f"_setup_{kind}")()

    # torch ----------------------------------------------------------------------------------
    def _setup_torch(self) -> dict[str, Any]:
        import torch

        torch.set_num_threads(self.threads)
        cand, shape = self.cand, self.shape()
        model = build_torch_model(cand.model, self.sizes.base)
        self.flops = forward_flops(model, shape)
        fmt = torch.channels_last if cand.channels_last else torch.contiguous_format
        info: dict[str, Any] = {"params": sum(p.numel() for p in model.parameters())}
        if cand.task == "train":
            self.model = model.train().to(memory_format=fmt)
            self.x = torch.randn(*shape).contiguous(memory_format=fmt)
            self.y = torch.randint(0, 2, (shape[0], *shape[2:]))
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
            self.flops *= 3  # forward + backward (about 2x the forward): the usual estimate
            self.run = self._train_step
            return info
        model = model.eval()
        if cand.fold_bn:
            model = fold_batch_norm(copy.deepcopy(model))
        dtype = torch.bfloat16 if cand.cast_bf16 else torch.float32
        self.model = model.to(dtype=dtype, memory_format=fmt)
        self.x = torch.randn(*shape, dtype=dtype).contiguous(memory_format=fmt)
        if cand.compile:
            import torch._inductor.config as inductor

            inductor.freezing = True  # constant-fold weights, fold BN, prepack for oneDNN
            started = time.perf_counter()
            self.model = torch.compile(self.model)
            with torch.inference_mode():
                self.model(self.x)
            info["compile_s"] = time.perf_counter() - started
        self.run = self._infer
        return info

    def _infer(self) -> None:
        import torch

        with torch.inference_mode():
            if self.cand.precision == "bf16" and not self.cand.cast_bf16:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    self.model(self.x)
            else:
                self.model(self.x)

    def _train_step(self) -> None:
        import torch
        import torch.nn.functional as F

        self.optimizer.zero_grad(set_to_none=True)
        if self.cand.precision == "bf16":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = self.model(self.x)
            loss = F.cross_entropy(logits.float(), self.y)
        else:
            loss = F.cross_entropy(self.model(self.x), self.y)
        loss.backward()
        self.optimizer.step()

    # ONNX Runtime ----------------------------------------------------------------------------
    def _setup_onnx(self) -> dict[str, Any]:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            self.cand.onnx_path, options, providers=["CPUExecutionProvider"]
        )
        shape = self.shape()
        self.feed = {
            self.session.get_inputs()[0].name: np.random.default_rng(0)
            .uniform(0, 255, shape)
            .astype(np.float32)
        }
        meta = json.loads(self.session.get_modelmeta().custom_metadata_map["unetlab"])
        self.flops = int(meta.get("benchmark_flops_per_image", 0)) * shape[0]
        self.run = lambda: self.session.run(None, self.feed)
        return {"graph_optimization_level": "ORT_ENABLE_ALL", "onnxruntime": ort.__version__}

    # ceiling ---------------------------------------------------------------------------------
    def _setup_ceiling(self) -> dict[str, Any]:
        import torch

        torch.set_num_threads(self.threads)
        n, c, side = self.sizes.matmul, self.sizes.conv_channels, self.sizes.conv_side
        self.a, self.b = torch.randn(n, n), torch.randn(n, n)
        self.conv = torch.nn.Conv2d(c, c, 3, padding=1, bias=False).eval()
        self.conv = self.conv.to(memory_format=torch.channels_last)
        self.cx = torch.randn(1, c, side, side).contiguous(memory_format=torch.channels_last)
        # the same two operations in bf16 (native on AVX-512 bf16 / AMX, emulated elsewhere)
        self.a16, self.b16 = self.a.bfloat16(), self.b.bfloat16()
        self.conv16, self.cx16 = copy.deepcopy(self.conv).bfloat16(), self.cx.bfloat16()
        self.matmul_flops = 2 * n**3
        self.conv_flops = 2 * c * c * 9 * side * side
        self.flops = 2 * (self.matmul_flops + self.conv_flops)
        self.run = self._ceiling
        return {
            "matmul": f"{n}x{n} @ {n}x{n}, fp32 and bf16",
            "conv": f"3x3 conv {c}->{c} channels on 1x{c}x{side}x{side}, channels_last, "
            "fp32 and bf16",
        }

    def _ceiling(self) -> None:
        import torch

        marks = [time.perf_counter()]
        with torch.inference_mode():
            for step in (
                lambda: torch.mm(self.a, self.b),
                lambda: self.conv(self.cx),
                lambda: torch.mm(self.a16, self.b16),
                lambda: self.conv16(self.cx16),
            ):
                step()
                marks.append(time.perf_counter())
        seconds = [b - a for a, b in itertools.pairwise(marks)]
        flops = [self.matmul_flops, self.conv_flops] * 2
        names = ["matmul", "conv", "matmul_bf16", "conv_bf16"]
        self.parts = {
            f"{name}_gflops_per_s": f / t / 1e9
            for name, f, t in zip(names, flops, seconds, strict=True)
        }


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """This process's RSS high-water mark. ``/proc/self/status`` VmHWM, not ``ru_maxrss``:
    Linux carries ``ru_maxrss`` over ``execve`` from the parent, VmHWM is this address space's."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def worker_main(spec: str) -> None:
    """Serve one candidate: 'run' -> one timed call; 'quit' -> peak memory, exit."""
    payload = json.loads(spec)
    cand, sizes = Candidate(**payload["candidate"]), Sizes(**payload["sizes"])
    out = sys.stdout
    sys.stdout = sys.stderr  # library chatter must not corrupt the protocol

    def reply(message: dict[str, Any]) -> None:
        out.write(json.dumps(message) + "\n")
        out.flush()

    try:
        runner = Runner(cand, sizes, payload["threads"])
        started = time.perf_counter()
        info = runner.setup()
        info["setup_s"] = time.perf_counter() - started
        started = time.perf_counter()
        runner.run()  # untimed first call: kernel selection, weight packing, memory arenas
        info["first_call_s"] = time.perf_counter() - started
    except Exception as exc:  # a peer that cannot be built/imported here: say why, then stop
        reply({"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"})
        return
    trim = _malloc_trim()
    reply({"ready": True, "info": info, "flops": runner.flops, "rss_after_setup_mb": rss_mb()})
    for line in sys.stdin:
        command = line.strip()
        if command == "run":
            start = time.perf_counter()
            runner.run()
            elapsed = time.perf_counter() - start
            trim()  # give freed activations back to the OS so idle workers stay small
            reply({"t": elapsed, "parts": runner.parts})
        elif command == "quit":
            reply({"peak_rss_mb": peak_rss_mb(), "rss_mb": rss_mb()})
            return


def _malloc_trim():
    try:
        libc = ctypes.CDLL("libc.so.6")
        return lambda: libc.malloc_trim(0)
    except OSError:
        return lambda: None


# ---------------------------------------------------------------------------------------------
# Coordinator


class Worker:
    def __init__(self, cand: Candidate, sizes: Sizes, threads: int):
        self.cand = cand
        spec = json.dumps({"candidate": asdict(cand), "sizes": asdict(sizes), "threads": threads})
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", spec],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.hello = self._read()

    def _read(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()
        if not line:
            return {"error": f"worker exited with code {self.proc.wait()}"}
        return json.loads(line)

    def ask(self, command: str) -> dict[str, Any]:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> dict[str, Any]:
        if self.proc.poll() is not None:
            return {}
        answer = self.ask("quit")
        self.proc.wait(timeout=60)
        return answer


def cpu_sample() -> dict[str, Any]:
    """Jiffies: total busy time of the machine and per process (a top-like snapshot)."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    busy = sum(values) - values[3] - (values[4] if len(values) > 4 else 0)  # minus idle, iowait
    procs: dict[int, tuple[str, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                text = handle.read()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        procs[int(entry)] = (name, int(fields[11]) + int(fields[12]))
    return {"time": time.monotonic(), "busy": busy, "procs": procs}


def background(before: dict[str, Any], after: dict[str, Any], ours: set[int]) -> dict[str, Any]:
    """Cores used by processes other than this benchmark during a round, and the busiest."""
    hz = os.sysconf("SC_CLK_TCK")
    seconds = max(after["time"] - before["time"], 1e-9)
    total = (after["busy"] - before["busy"]) / hz / seconds
    deltas = []
    for pid, (name, ticks) in after["procs"].items():
        delta = ticks - before["procs"].get(pid, (name, 0))[1]
        if delta > 0:
            deltas.append((delta / hz / seconds, pid, name))
    mine = sum(d for d, pid, _ in deltas if pid in ours)
    others = sorted(((d, pid, n) for d, pid, n in deltas if pid not in ours), reverse=True)
    return {
        "machine_cores_busy": round(total, 2),
        "this_benchmark_cores": round(mine, 2),
        "background_cores": round(max(total - mine, 0.0), 2),
        "top_background": [f"{n}[{pid}] {100 * d:.0f}%" for d, pid, n in others[:3]],
    }


@dataclass
class Result:
    candidate: Candidate
    times_s: list[float] = field(default_factory=list)
    parts: list[dict[str, float]] = field(default_factory=list)
    flops: int = 0
    info: dict[str, Any] = field(default_factory=dict)
    rss_after_setup_mb: float | None = None
    peak_rss_mb: float | None = None
    error: str | None = None

    @property
    def median_s(self) -> float | None:
        return statistics.median(self.times_s) if self.times_s else None


def run_task(
    cands: list[Candidate], sizes: Sizes, threads: int, warmup: int, repeats: int, log
) -> tuple[list[Result], list[dict[str, Any]]]:
    """Start one worker per candidate, run them round-robin, collect times and memory."""
    results = [Result(c) for c in cands]
    workers: list[Worker | None] = []
    for result in results:
        log(f"  starting {result.candidate.name} ...")
        worker = Worker(result.candidate, sizes, threads)
        hello = worker.hello
        if "error" in hello:
            result.error = hello["error"]
            if result.candidate.model == "smp" and "torchvision" in result.error:
                result.error += f" ({SMP_REASON_HINT})"
            log(f"    cannot run: {result.error}")
            worker.close()
            workers.append(None)
            continue
        result.flops, result.info = hello["flops"], hello["info"]
        result.rss_after_setup_mb = hello["rss_after_setup_mb"]
        workers.append(worker)
    live = [i for i, w in enumerate(workers) if w is not None]
    ours = {os.getpid(), *(workers[i].proc.pid for i in live)}
    rounds = []
    for r in range(warmup + repeats):
        order = live[r % len(live) :] + live[: r % len(live)] if live else []
        load_before, sample = os.getloadavg(), cpu_sample()
        started = time.perf_counter()
        for i in order:
            answer = workers[i].ask("run")
            if r >= warmup:
                results[i].times_s.append(answer["t"])
                if answer.get("parts"):
                    results[i].parts.append(answer["parts"])
        record = {
            "round": r,
            "warmup": r < warmup,
            "seconds": round(time.perf_counter() - started, 2),
            "loadavg_before": [round(v, 2) for v in load_before],
            "loadavg_after": [round(v, 2) for v in os.getloadavg()],
            **background(sample, cpu_sample(), ours),
        }
        rounds.append(record)
        log(
            f"  round {r + 1}/{warmup + repeats}{' (warm-up)' if r < warmup else ''}: "
            f"{record['seconds']} s, load {record['loadavg_before'][0]} -> "
            f"{record['loadavg_after'][0]}, background {record['background_cores']} cores"
        )
    for i in live:
        answer = workers[i].close()
        results[i].peak_rss_mb = answer.get("peak_rss_mb")
    return results, rounds


# ---------------------------------------------------------------------------------------------
# Preparing the ONNX files, machine facts, summary


def prepare_onnx(folder: Path, sizes: Sizes, log) -> tuple[str, str, dict[str, Any]]:
    """Export unetlab's unet to fp32 ONNX and quantise it to int8 (calibrated on synthetic
    shapes images: the ranges do not change the speed)."""
    import onnx
    import torch

    from unetlab.data.preprocess import Normalization
    from unetlab.export.onnx import export_model
    from unetlab.export.quantize import quantize_onnx

    model = build_torch_model("unetlab", sizes.base).eval()
    spec = {"name": "unet", "num_classes": 2, "in_channels": 3, "options": {"base": sizes.base}}
    fp32, int8 = folder / "unet.onnx", folder / "unet.int8.onnx"
    started = time.perf_counter()
    torch.manual_seed(0)
    export_model(model, fp32, spec=spec, normalization=Normalization(), tolerance=1e-3)
    flops = forward_flops(model, (1, 3, sizes.side, sizes.side))
    train_flops = forward_flops(model, (1, 3, sizes.train_side, sizes.train_side))
    _stamp_flops(onnx, fp32, flops)
    export_s = time.perf_counter() - started
    log(f"  exported fp32 ONNX in {export_s:.0f} s")
    rng = np.random.default_rng(0)
    calibration = [synthetic_image(rng, sizes.train_side) for _ in range(4)]
    started = time.perf_counter()
    report = quantize_onnx(fp32, int8, calibration, calibration_size=sizes.train_side)
    _stamp_flops(onnx, int8, flops)
    log(f"  quantised to int8 in {report.seconds:.0f} s")
    details = {
        "export_s": round(export_s, 1),
        "quantize_s": round(time.perf_counter() - started, 1),
        "fp32_mb": round(fp32.stat().st_size / 2**20, 1),
        "int8_mb": round(int8.stat().st_size / 2**20, 1),
        "int8_settings": "QDQ, uint8 activations, int8 per-channel weights (7-bit range), "
        f"MinMax calibration on {report.num_images} synthetic {sizes.train_side}px images",
        "forward_gflops_per_image": flops / 1e9,
        "train_forward_gflops_per_image": train_flops / 1e9,
    }
    return str(fp32), str(int8), details


def synthetic_image(rng: np.random.Generator, side: int) -> np.ndarray:
    """Bright blobs on a textured background: plausible activation ranges for calibration."""
    yy, xx = np.mgrid[:side, :side]
    image = rng.normal(90, 25, (side, side, 3))
    for _ in range(6):
        cy, cx = rng.uniform(0, side, 2)
        r = rng.uniform(side / 16, side / 5)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] += rng.uniform(40, 120, 3)
    return np.clip(image, 0, 255).astype(np.uint8)


def _stamp_flops(onnx, path: Path, flops: int) -> None:
    """Record the forward FLOPs per image in the file's metadata (for GFLOP/s)."""
    proto = onnx.load(str(path))
    props = {p.key: p.value for p in proto.metadata_props}
    meta = json.loads(props["unetlab"])
    meta["benchmark_flops_per_image"] = int(flops)
    props["unetlab"] = json.dumps(meta)
    onnx.helper.set_model_props(proto, props)
    onnx.save(proto, str(path))


def machine_facts(threads: int) -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model, flags = platform.processor(), set()
    for line in cpuinfo.splitlines():
        if line.startswith("model name") and model in ("", platform.processor()):
            model = line.split(":", 1)[1].strip()
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
    wanted = ["avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
              "avx512_bf16", "amx_bf16", "amx_int8", "avx512_fp16"]  # fmt: skip
    return {
        "cpu": model,
        "logical_cores": os.cpu_count(),
        "threads_used": threads,
        "isa": {flag: flag in flags for flag in wanted},
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
    }


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("torch", "onnxruntime", "onnx", "numpy", "monai", "segmentation_models_pytorch"):
        try:
            from importlib.metadata import version

            found[name] = version(name)
        except Exception:
            found[name] = "not installed"
    return found


def summarise(task_results: dict[str, list[Result]], ceiling: dict[str, float]) -> dict[str, Any]:
    """Per task: medians, images/s, GFLOP/s vs ceiling, ratio to the fastest peer."""
    out: dict[str, Any] = {}
    conv_ceiling = ceiling.get("conv_gflops_per_s")
    for task, results in task_results.items():
        peers = [r.median_s for r in results if r.candidate.group == "peer" and r.median_s]
        fastest_peer = min(peers) if peers else None
        rows = {}
        for r in results:
            cand, median = r.candidate, r.median_s
            row: dict[str, Any] = {
                "group": cand.group,
                "precision": cand.precision,
                "median_s": median,
                "times_s": [round(t, 4) for t in r.times_s],
                "rss_after_setup_mb": _round(r.rss_after_setup_mb),
                "peak_rss_mb": _round(r.peak_rss_mb),
                "info": r.info,
                "error": r.error,
            }
            if median:
                batch = 4 if task == "train" else (1 if task == "latency" else 8)
                row["images_per_s"] = batch / median if task != "ceiling" else None
                if r.flops and cand.group != "ceiling":
                    row["gflops"] = r.flops / 1e9
                    row["achieved_gflops_per_s"] = r.flops / median / 1e9
                    if conv_ceiling:
                        row["fraction_of_conv_ceiling"] = (
                            row["achieved_gflops_per_s"] / conv_ceiling
                        )
                if fastest_peer and cand.group != "ceiling":
                    row["speed_vs_fastest_peer"] = fastest_peer / median
            rows[cand.name] = row
        out[task] = {"fastest_peer_median_s": fastest_peer, "candidates": rows}
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def targets(summary: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets (a), (b), (c) from the medians, with the per-round paired ratios
    (same round, so the same background) as a check on how stable each verdict is."""

    def best(task: str, group: str, precision: str | None = None, eager_only: bool = False):
        rows = summary.get(task, {}).get("candidates", {})
        found = [
            (row["median_s"], name)
            for name, row in rows.items()
            if row["group"] == group
            and row["median_s"]
            and (precision is None or row["precision"] == precision)
            and (not eager_only or "eager" in name)
        ]
        return min(found) if found else (None, None)

    def compare(task: str, goal: str, slow: str, fast: str, needed: float) -> dict[str, Any]:
        rows = summary[task]["candidates"]
        paired = [a / b for a, b in zip(rows[slow]["times_s"], rows[fast]["times_s"], strict=False)]
        speedup = rows[slow]["median_s"] / rows[fast]["median_s"]
        return {
            "goal": goal,
            "task": task,
            "faster": fast,
            "slower": slow,
            "speedup": speedup,
            "needed": needed,
            "met": speedup >= needed,
            "per_round_speedups": [round(r, 3) for r in paired],
        }

    result: dict[str, Any] = {}
    for task in ("latency", "throughput"):
        fp32, fp32_name = best(task, "unetlab", "fp32")
        peer, peer_name = best(task, "peer", eager_only=True)
        if fp32 and peer:
            goal = "unetlab fp32 >= 1.4x faster than the fastest peer (eager)"
            result[f"a_{task}"] = compare(task, goal, peer_name, fp32_name, 1.4)
        reduced = [p for p in (best(task, "unetlab", q) for q in ("int8", "bf16")) if p[0]]
        if fp32 and reduced:
            goal = "reduced precision >= 2x faster than unetlab's fastest fp32 path"
            result[f"b_{task}"] = compare(task, goal, fp32_name, min(reduced)[1], 2.0)
    train, train_name = best("train", "unetlab", "fp32")
    peer_train, peer_train_name = best("train", "peer")
    bf16, bf16_name = best("train", "unetlab", "bf16")
    if train and peer_train:
        goal = "unetlab fp32 training step no slower than the fastest peer's"
        result["c"] = compare("train", goal, peer_train_name, train_name, 1.0)
    if train and bf16:
        goal = "bf16-autocast training step vs unetlab's fastest fp32 step (measured, no goal)"
        result["c_bf16"] = compare("train", goal, train_name, bf16_name, 0.0)
        result["c_bf16"].pop("met")
    return result


def format_targets(found: dict[str, Any]) -> str:
    lines = []
    for key, t in found.items():
        verdict = "" if "met" not in t else (" -> met" if t["met"] else " -> NOT met")
        rounds = ", ".join(f"{r:.2f}" for r in t["per_round_speedups"])
        lines.append(
            f"target {key}: {t['goal']}: {t['faster']} vs {t['slower']}: {t['speedup']:.2f}x "
            f"(per round {rounds}){verdict}"
        )
    return "\n".join(lines)


def markdown(summary: dict[str, Any]) -> str:
    lines = []
    titles = {
        "latency": "Latency, batch 1",
        "throughput": "Throughput, batch 8",
        "train": "One training step, batch 4",
    }
    for task, data in summary.items():
        lines += [
            f"\n**{titles.get(task, task)}**\n",
            "| candidate | median | images/s | GFLOP/s (% of conv ceiling) | speed vs fastest "
            "peer | peak RSS (after load) |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, row in data["candidates"].items():
            if row["group"] == "ceiling":
                continue
            if not row["median_s"]:
                reason = str(row["error"]).split(" (")[0]  # the full reason is in the JSON
                lines.append(f"| {name} | could not run: {reason} | | | | |")
                continue
            gflops = row.get("achieved_gflops_per_s")
            frac = row.get("fraction_of_conv_ceiling")
            ratio = row.get("speed_vs_fastest_peer")
            lines.append(
                f"| {name} | {row['median_s']:.3f} s | {row['images_per_s']:.2f} | "
                + (f"{gflops:.0f} ({100 * frac:.0f}%)" if gflops and frac else "")
                + f" | {f'{ratio:.2f}x' if ratio else ''} | "
                f"{row['peak_rss_mb']:.0f} MB ({row['rss_after_setup_mb']:.0f} MB) |"
            )
    return "\n".join(lines)


def profile_ops(sizes: Sizes, threads: int, runs: int = 2) -> str:
    """Where the time goes: per-operator shares of unetlab's unet at the latency shape, from
    ONNX Runtime's profiler (fp32 and int8 sessions) and torch.profiler (eager channels_last)."""
    import collections

    import onnxruntime as ort
    import torch

    lines = []
    with tempfile.TemporaryDirectory(prefix="unetlab-profile-") as folder:
        fp32, int8, _ = prepare_onnx(Path(folder), sizes, print)
        x = np.random.default_rng(0).uniform(0, 255, (1, 3, sizes.side, sizes.side))
        for label, path in (("ONNX Runtime fp32", fp32), ("ONNX Runtime int8", int8)):
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.enable_profiling = True
            options.profile_file_prefix = str(Path(folder) / label.replace(" ", "_"))
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            feed = {session.get_inputs()[0].name: x.astype(np.float32)}
            for _ in range(runs + 1):  # the profile includes the first (warm-up) call
                session.run(None, feed)
            events = json.loads(Path(session.end_profiling()).read_text())
            per_op: collections.Counter[str] = collections.Counter()
            for event in events:
                if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
                    per_op[event["args"]["op_name"]] += event["dur"]
            lines.append(_shares(label, per_op, runs + 1, unit=1e-6))
        torch.set_num_threads(threads)
        model = build_torch_model("unetlab", sizes.base).eval()
        model = model.to(memory_format=torch.channels_last)
        xt = torch.randn(1, 3, sizes.side, sizes.side).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            model(xt)
            with torch.profiler.profile() as prof:
                for _ in range(runs):
                    model(xt)
        per_op = collections.Counter()
        for item in prof.key_averages():
            per_op[item.key] += item.self_cpu_time_total
        lines.append(_shares("torch eager channels_last", per_op, runs, unit=1e-6))
    return "\n\n".join(lines)


def _shares(label: str, per_op, runs: int, unit: float) -> str:
    total = sum(per_op.values()) or 1
    rows = [f"{label}: {total * unit / runs:.2f} s of operator time per forward pass"]
    for op, spent in per_op.most_common(8):
        rows.append(f"  {op:32s} {100 * spent / total:5.1f}%  {spent * unit / runs:7.3f} s")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 1 round, no warm-up")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per task")
    parser.add_argument(
        "--warmup",
        type=int,
        default=0,
        help="untimed rounds first (each worker already makes one untimed call)",
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--tasks", default="latency,throughput,train")
    parser.add_argument("--throughput-repeats", type=int, default=None,
                        help="rounds for the batch-8 task [--repeats]")  # fmt: skip
    parser.add_argument("--compile", action="store_true", help="add a torch.compile candidate")
    parser.add_argument("--out", default="speed_results.json")
    parser.add_argument("--from-json", help="re-print the tables and targets of a results file")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="only print where the time goes (operator shares), no comparison",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args.worker)
        return 0
    if args.from_json:
        stored = json.loads(Path(args.from_json).read_text())
        print(markdown(stored["results"]))
        print(format_targets(targets(stored["results"])))
        return 0
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.profile:
        print(profile_ops(sizes, args.threads))
        return 0
    repeats, warmup = (1, 0) if args.quick else (args.repeats, args.warmup)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]

    def log(text: str) -> None:
        print(text, flush=True)

    record: dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *(argv or sys.argv[1:])]),
        "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_facts(args.threads),
        "versions": versions(),
        "sizes": asdict(sizes),
        "repeats": repeats,
        "warmup_rounds": warmup,
        "loadavg_at_start": os.getloadavg(),
    }
    log(f"machine: {record['machine']['cpu']}, {record['machine']['logical_cores']} cores, "
        f"{args.threads} threads; load {record['loadavg_at_start']}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="unetlab-speed-") as folder:
        log("preparing ONNX files ...")
        fp32, int8, record["onnx"] = prepare_onnx(Path(folder), sizes, log)
        all_cands = candidates(tasks, fp32, int8, args.compile)
        task_results: dict[str, list[Result]] = {}
        record["rounds"] = {}
        for task in tasks:
            cands = [c for c in all_cands if c.task == task]
            task_repeats = repeats
            if task == "throughput" and args.throughput_repeats and not args.quick:
                task_repeats = args.throughput_repeats
            log(f"task {task}: {len(cands)} candidates, {warmup} warm-up + {task_repeats} rounds")
            results, rounds = run_task(cands, sizes, args.threads, warmup, task_repeats, log)
            task_results[task] = results
            record["rounds"][task] = rounds
    ceiling_rows = [r for rs in task_results.values() for r in rs if r.candidate.group == "ceiling"]
    ceiling: dict[str, float] = {}
    if ceiling_rows and ceiling_rows[0].parts:
        for key in ceiling_rows[0].parts[0]:
            ceiling[key] = statistics.median(p[key] for p in ceiling_rows[0].parts)
        ceiling["all"] = ceiling_rows[0].parts  # type: ignore[assignment]
    record["ceiling"] = ceiling
    record["results"] = summarise(task_results, ceiling)
    record["targets"] = targets(record["results"])
    record["loadavg_at_end"] = os.getloadavg()
    record["finished"] = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    Path(args.out).write_text(json.dumps(record, indent=2, default=str))
    log(markdown(record["results"]))
    if ceiling:
        log("\nceiling (median GFLOP/s): " + ", ".join(
            f"{key.removesuffix('_gflops_per_s')} {value:.0f}"
            for key, value in ceiling.items() if key != "all"))  # fmt: skip
    log(format_targets(record["targets"]))
    log(f"load average at start {record['loadavg_at_start']}, at end {record['loadavg_at_end']}")
    log(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
