"""``plan_dataset``: fingerprint the data, probe the machine, make and write the plan.

The Python API under ``unetlab plan`` and ``unetlab train --data DIR --budget 20m``. The time
spent here (the fingerprint is cached; the probe takes seconds) is taken from the budget, so a
planned run fills exactly the minutes it was given.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from unetlab.data.layouts import dataset_info
from unetlab.data.splitting import AUTO_TRAIN, AUTO_VAL
from unetlab.engine.probe import Timing, time_candidate
from unetlab.errors import UnetlabError
from unetlab.plan.fingerprint import fingerprint_dataset
from unetlab.plan.planner import (
    Orientation,
    Plan,
    PlanOptions,
    choose_precision,
    make_plan,
    precision_candidates,
    width_candidates,
)


def parse_budget(text: str | float | int) -> float:
    """Seconds from ``20m``, ``1.5h``, ``90s`` or a bare number of minutes."""
    if isinstance(text, (int, float)):
        seconds = float(text) * 60.0
    else:
        value = text.strip().lower()
        units = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
        unit = next((u for u in ("min", "s", "m", "h") if value.endswith(u)), None)
        number = value[: -len(unit)] if unit else value
        try:
            seconds = float(number) * (units[unit] if unit else 60.0)
        except ValueError:
            raise UnetlabError(
                f"cannot read the budget {text!r}", hint="write e.g. 20m, 1.5h, 90s or 20"
            ) from None
    if not seconds > 0:
        raise UnetlabError(f"the budget must be positive, got {text!r}")
    return seconds


def plan_dataset(
    root: str | Path,
    budget_seconds: float,
    *,
    device: str = "auto",
    orientation: Orientation = "auto",
    train_split: str = "train",
    val_split: str = "val",
    log: Callable[[str], None] = print,
    trains_now: bool = True,
) -> Plan:
    """Fingerprint ``root``, time candidate steps on ``device`` and plan a run of the budget
    (splits by name, or as paths to ``.txt`` id lists; a dataset without split lists is
    planned on its automatic split, ``auto-train`` / ``auto-val``). ``trains_now``: the run
    starts right after planning (``train --budget``), so the planning time comes out of the
    budget; a plan written to train later (``unetlab plan``) gets the whole budget."""
    import torch

    started = time.perf_counter()
    device_type = "cuda" if device.startswith("cuda") or (
        device == "auto" and torch.cuda.is_available()) else "cpu"
    torch_device = torch.device(device if device not in ("auto",) else device_type)
    if (train_split, val_split) == ("train", "val"):
        train_split, val_split = dataset_info(root).default_splits
    if train_split == AUTO_TRAIN:
        log(f"no split lists in {root}: training on {AUTO_TRAIN}, validating on {AUTO_VAL} "
            "(the automatic split; 'unetlab data split' writes lists of your own)")
    fp = fingerprint_dataset(root, train_split, val_split)
    log(f"fingerprint ({time.perf_counter() - started:.0f} s):\n{fp.describe()}")
    classes = fp.num_classes
    timings: list[Timing] = []
    for candidate in precision_candidates(fp, device_type):
        timings.append(time_candidate(candidate, fp.channels, classes, torch_device))
        log(f"probe: {candidate.label()}: {timings[-1].step_seconds:.3f} s/step")
    fastest, _ = choose_precision(timings)
    for candidate in width_candidates(
        fp, device_type, fastest.candidate.precision, fastest.candidate.channels_last
    ):
        if any(t.candidate == candidate for t in timings):
            continue
        timings.append(time_candidate(candidate, fp.channels, classes, torch_device))
        log(f"probe: {candidate.label()}: {timings[-1].step_seconds:.3f} s/step")
    options = PlanOptions(
        budget_seconds=budget_seconds,
        device=device_type,
        cores=torch.get_num_threads(),
        orientation=orientation,
        seconds_spent=time.perf_counter() - started if trains_now else 0.0,
    )
    return make_plan(fp, timings, options)


def plan_to_yaml(plan: Plan) -> str:
    """``plan.yaml``: a normal run configuration, each chosen field followed by its reason."""
    header = [
        f"# unetlab plan for {plan.fingerprint.root}",
        f"# made {time.strftime('%Y-%m-%d %H:%M')} on {_cpu_name()}; train it with",
        "#   unetlab train THIS_FILE   (edit any field first; the reasons are comments)",
        "#",
        "# the data:",
        *(f"#   {line}" for line in plan.fingerprint.describe().splitlines()),
        "# step times measured on this machine:",
        *(
            f"#   {t.candidate.label()}: {t.step_seconds:.3f} s/step, "
            f"{t.forward_seconds_per_mpixel:.2f} s per megapixel to predict"
            for t in plan.timings
        ),
        "",
    ]
    body = yaml.dump(plan.config, Dumper=_FlowListDumper, sort_keys=False, width=1000)
    lines: list[str] = []
    path: list[str] = []
    for line in body.splitlines():
        indent = (len(line) - len(line.lstrip(" "))) // 2
        key = line.strip().split(":", 1)[0]
        path = [*path[:indent], key]
        reason = plan.reasons.get(".".join(path))
        lines.append(f"{line}  # {reason}" if reason else line)
    return "\n".join(header + lines) + "\n"


def write_plan(plan: Plan, path: str | Path) -> Path:
    """Write ``plan.yaml`` atomically; refuses to replace a file that exists."""
    path = Path(path)
    if path.exists():
        raise UnetlabError("a file of this name exists", path, "pass another --out or remove it")
    from unetlab.fs.atomic import write_text

    return write_text(path, plan_to_yaml(plan))


class _FlowListDumper(yaml.SafeDumper):
    """Lists on one line, so every field is one line that can carry its reason."""


def _flow_list(dumper: yaml.SafeDumper, values: list[Any]) -> Any:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", values, flow_style=True)


_FlowListDumper.add_representer(list, _flow_list)
_FlowListDumper.add_representer(tuple, _flow_list)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f" ({os.cpu_count()} cores)"
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()
