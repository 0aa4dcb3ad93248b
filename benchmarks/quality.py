"""Quality under a fixed wall-clock budget: train a preset for N minutes, score it on val.

    python benchmarks/quality.py --preset isbi2012 --data ../shared/datasets/isbi2012 --minutes 20
    python benchmarks/quality.py --preset camvid --data ../shared/datasets/camvid --minutes 60

The budget is the wall-clock time of training and validation (``train.time_limit_minutes``;
start-up and the final evaluation are not counted), and the learning-rate schedule is stretched
over it, so a run always ends annealed. ``epochs``
is set high enough that the clock, not the epoch count, ends the run (override with
``--set train.epochs=N``). Both the best checkpoint (by val mIoU, chosen on the val split, so
optimistic) and the last one are evaluated on val. Writes a JSON record (metrics, command,
budget, machine, load average before/after, versions) and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    import torch

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


def git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def scores(report: Any) -> dict[str, Any]:
    """The report.json of an evaluation, less the bulky parts (per-image rows, file list)."""
    values = report.to_dict()
    for key in ("files", "checkpoint", "data_root", "class_names"):
        values.pop(key, None)
    if isinstance(values.get("binary"), dict):
        values["binary"] = {k: v for k, v in values["binary"].items() if k != "per_image"}
    return values


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", required=True, help="isbi2012, camvid or demo")
    parser.add_argument("--data", required=True, help="dataset folder")
    parser.add_argument("--minutes", type=float, required=True, help="training time budget")
    parser.add_argument("--out", default="benchmarks/results", help="folder for the JSON record")
    parser.add_argument("--runs", default="runs/benchmarks", help="folder for the run folders")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tag", default="", help="suffix of the record's name, e.g. bf16")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="config override (repeatable)")
    args = parser.parse_args(argv)

    from unetlab.engine.config import load_config
    from unetlab.engine.evaluate import evaluate
    from unetlab.engine.trainer import train

    out = Path(args.out)
    name = f"quality-{args.preset}-{args.minutes:g}min" + (f"-{args.tag}" if args.tag else "")
    cfg = load_config(
        preset=args.preset,
        options={
            "data": {"root": args.data},
            "out_dir": args.runs,
            "train": {"epochs": 10_000, "time_limit_minutes": args.minutes,
                      "device": args.device},
        },
        overrides=args.overrides,
    )
    load_before = os.getloadavg()
    started = time.time()
    result = train(cfg)
    wall_train = time.time() - started
    record: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "preset": args.preset,
        "data": str(Path(args.data).resolve()),
        "budget_minutes": args.minutes,
        "overrides": args.overrides,
        "run_dir": str(result.run_dir),
        "stopped": result.stopped,
        "epochs": result.epochs,
        "steps": result.global_step,
        "train_wall_seconds": round(wall_train, 1),
        "config": cfg.to_dict(),
    }
    for label, checkpoint in (("best", result.best_checkpoint), ("last", result.last_checkpoint)):
        if checkpoint is not None:
            report = evaluate(checkpoint, args.data, split="val", device=args.device,
                              out_dir=result.run_dir / "evaluation" / label)
            record[f"val_{label}"] = {"epoch": _epoch(checkpoint), **scores(report)}
    record["load_average_before"] = [round(v, 2) for v in load_before]
    record["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    record["machine"] = machine()
    record["git_commit"] = git_commit()
    record["date"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    summary = {k: v for k, v in record.items() if k != "config"}
    print(json.dumps(summary, indent=2))
    print(f"written: {path}")
    return record


def _epoch(checkpoint: Path) -> int:
    from unetlab.engine.checkpoint import load_checkpoint

    return int(load_checkpoint(checkpoint)["epoch"])


if __name__ == "__main__":
    main()
