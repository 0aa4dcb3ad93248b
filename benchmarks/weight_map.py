"""Time of the U-Net paper's weight map (``unet_weight_map``) on real masks.

The target (moved here from the test suite, where a wall-clock bound fails on a busy machine):
one 512x512 ISBI 2012 mask, cells as objects, in under 5 s on a 2-core CPU. The trainer
computes each training mask's map once, so this bounds the start-up cost of a weighted run.

    python benchmarks/weight_map.py ../shared/datasets/isbi2012 --object-classes 0
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from unetlab.losses.weight_map import unet_weight_map

TARGET_S = 5.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path, help="a plain-layout dataset (masks/*.png)")
    parser.add_argument("--object-classes", type=int, nargs="+", default=[0])
    parser.add_argument("--masks", type=int, default=3, help="how many masks to time")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, help="also write a JSON record here")
    args = parser.parse_args()

    paths = sorted((args.dataset / "masks").glob("*.png"))[: args.masks]
    if not paths:
        raise SystemExit(f"no masks/*.png in {args.dataset}")
    load_before = os.getloadavg()
    rows = []
    for path in paths:
        mask = np.asarray(Image.open(path))
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            unet_weight_map(mask, object_classes=tuple(args.object_classes))
            times.append(time.perf_counter() - started)
        rows.append({"mask": path.name, "shape": list(mask.shape),
                     "median_s": statistics.median(times)})
        print(f"{path.name} {mask.shape[0]}x{mask.shape[1]}: median {rows[-1]['median_s']:.3f} s")
    worst = max(row["median_s"] for row in rows)
    verdict = "meets" if worst < TARGET_S else "MISSES"
    print(f"slowest mask {worst:.3f} s: {verdict} the target of {TARGET_S:g} s "
          f"(load average before {load_before[0]:.2f}, {os.cpu_count()} cores)")
    if args.out:
        record = {"command": "benchmarks/weight_map.py", "machine": platform.processor(),
                  "cores": os.cpu_count(), "load_before": load_before,
                  "load_after": os.getloadavg(), "target_s": TARGET_S, "rows": rows}
        args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
