"""Peak memory of tiled prediction on a very large image (issue 4: 8192 x 8192 under 2 GB).

Each configuration runs in a fresh child process so its peak resident set size (VmHWM) is its
own. Reported per run: resident memory before predicting (Python, torch, model, the uint8
image), the peak during prediction, the peak numpy allocation seen by tracemalloc, the time and
the tile count. The image is random uint8 RGB; the model a unetlab ``unet`` with random weights
(the memory of the blending buffers does not depend on the weights).

    python benchmarks/tiled_memory.py                         # 8192 x 8192, base 8, batch 1
    python benchmarks/tiled_memory.py --base 64 --size 2048   # the classic width
    python benchmarks/tiled_memory.py --output logits         # keep the full float logits
    python benchmarks/tiled_memory.py --base 64 --precision bf16 --out tiled.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path


def rss_mb(field: str) -> float:
    """VmRSS (current) or VmHWM (peak) of this process in MiB, from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    from unetlab.data.preprocess import Normalization
    from unetlab.inference.core import PredictOptions
    from unetlab.inference.predictor import Predictor
    from unetlab.models import build_model

    torch.set_num_threads(args.threads)
    model = build_model("unet", args.classes, base=args.base, depth=4)
    options = PredictOptions(
        tile=args.tile, overlap=args.overlap, batch_size=args.batch, progress=args.progress
    )
    names = [f"c{i}" for i in range(max(args.classes, 2))]
    predictor = Predictor(
        model, Normalization(), names, device=args.device, precision=args.precision,
        options=options,
    )
    image = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    tiles = predictor.tile_count(args.size, args.size)
    before = rss_mb("VmRSS")
    tracemalloc.start()
    started = time.perf_counter()
    predict = predictor.logits if args.output == "logits" else predictor.predict
    result = predict(image)
    result = getattr(result, "labels", result)
    seconds = time.perf_counter() - started
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    cuda_peak = (
        torch.cuda.max_memory_allocated() / 2**20 if predictor.device.type == "cuda" else None
    )
    return {
        "size": args.size,
        "base": args.base,
        "classes": args.classes,
        "tile": args.tile,
        "overlap": args.overlap,
        "batch": args.batch,
        "output": args.output,
        "precision": args.precision,
        "result": f"{result.dtype} {tuple(result.shape)} = {result.nbytes / 2**20:.0f} MiB",
        "tiles": tiles,
        "seconds": round(seconds, 1),
        "rss_before_mb": round(before),
        "peak_rss_mb": round(rss_mb("VmHWM")),
        "tracemalloc_peak_mb": round(traced_peak / 2**20),
        "device": str(predictor.device),
        "cuda_peak_mb": cuda_peak and round(cuda_peak),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--base", type=int, default=8)
    parser.add_argument("--classes", type=int, default=2)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--output", choices=["labels", "logits"], default="labels")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", help="fp32, bf16, fp16 or auto")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--out", default=None, help="also write the record as JSON here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    command = [sys.executable, __file__, "--child", *sys.argv[1:]]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(done.stderr)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    load = os.getloadavg()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {load[0]:.1f}"
    )
    print(f"command: python benchmarks/tiled_memory.py {' '.join(sys.argv[1:])}")
    for key, value in report.items():
        print(f"  {key:20s} {value}")
    print(f"  peak - before        {report['peak_rss_mb'] - report['rss_before_mb']} MiB")
    if args.out:
        record = {
            "command": f"python benchmarks/tiled_memory.py {' '.join(sys.argv[1:])}",
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "load_average_after": [round(v, 2) for v in load],
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            **report,
        }
        Path(args.out).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
