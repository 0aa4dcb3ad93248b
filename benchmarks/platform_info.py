"""What every quality record says about where and when it ran: machine, versions, load.

``load_average()`` at the start and ``record(start)`` at the end give the load averages and the
cores other processes used on average during the run (``/proc/stat`` busy time less this
process's own CPU time): the number that says whether a timing can be trusted on a shared
machine.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import time
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent


def _busy_seconds() -> float | None:
    """Busy CPU seconds of the whole machine since boot (all cores)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def load_average() -> dict[str, Any]:
    """A snapshot to pass to :func:`record` at the end."""
    return {
        "loadavg": [round(v, 2) for v in os.getloadavg()],
        "busy": _busy_seconds(),
        "own": _own_seconds(),
        "time": time.time(),
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    wanted = ("amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni", "avx512f", "avx2")
    return [flag for flag in wanted if f" {flag}" in text]


def machine() -> dict[str, Any]:
    import torch

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
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
            cwd=_HERE,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def record(start: dict[str, Any]) -> dict[str, Any]:
    """Load during the run (since ``start``), machine, commit and date."""
    end = load_average()
    wall = max(end["time"] - start["time"], 1e-9)
    others = None
    if start["busy"] is not None and end["busy"] is not None:
        busy = (end["busy"] - start["busy"]) - (end["own"] - start["own"])
        others = round(max(0.0, busy) / wall, 2)
    return {
        "load_average_before": start["loadavg"],
        "load_average_after": end["loadavg"],
        "other_processes_cores": others,
        "machine": machine(),
        "git_commit": git_commit(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def write_record(values: dict[str, Any], out: str | Path, name: str) -> dict[str, Any]:
    """Write ``OUT/NAME.json`` (atomically) and print a summary without the bulky parts."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(json.dumps(values, indent=2) + "\n")
    os.replace(temp, path)
    print(json.dumps(_summary(values), indent=2))
    print(f"written: {path}")
    return values


def _summary(values: Any) -> Any:
    if isinstance(values, dict):
        return {
            k: _summary(v)
            for k, v in values.items()
            if k not in ("config", "per_image", "confusion_matrix", "per_class", "machine")
        }
    return values
