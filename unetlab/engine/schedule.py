"""Learning-rate schedules as pure functions of training progress.

The learning rate is recomputed before every optimizer step from *where training is* (epochs
done, as a fraction), not from a stateful scheduler object. Why: a resumed run, a run whose
batch size changes when the encoder is unfrozen (fewer steps per epoch) and a run cut short by a
time budget all get the right rate without replaying scheduler steps.
"""

from __future__ import annotations

import math
from typing import Any

from torch.optim import Optimizer


def lr_at(
    schedule: Any,
    base_lr: float,
    progress: float,
    total: float,
    warmup: float,
    time_fraction: float = 0.0,
) -> float:
    """The learning rate at ``progress`` (in epochs, fractional) of a ``total``-epoch run.

    Args:
        schedule: a :class:`~unetlab.engine.config.ScheduleConfig` (``name``, ``step_size``,
            ``gamma``, ``power``, ``min_lr``).
        base_lr: the peak learning rate (``optim.lr``).
        progress: epochs done so far, e.g. 2.5 in the middle of the third epoch.
        total: the length of the run in epochs (the schedule ends there).
        warmup: warm-up length in epochs: the rate rises linearly to ``base_lr`` over it, then
            the decay starts from its beginning.
        time_fraction: the share of a time budget used up (0 without one). The decay follows
            whichever is further along, epochs or time, so a run cut by the clock ends annealed.
    """
    if warmup > 0 and progress < warmup:
        return base_lr * max(progress, 1e-3 * warmup) / warmup
    span = max(total - warmup, 1e-12)
    t = min(max((progress - warmup) / span, time_fraction, 0.0), 1.0)  # 0 -> 1 over the decay
    min_lr = min(schedule.min_lr, base_lr)
    if schedule.name == "constant":
        return base_lr
    if schedule.name == "cosine":
        return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))
    if schedule.name == "poly":
        return min_lr + (base_lr - min_lr) * (1.0 - t) ** schedule.power
    if schedule.name == "step":
        drops = math.floor(t * span / schedule.step_size)
        return max(base_lr * schedule.gamma**drops, min_lr)
    raise ValueError(f"unknown schedule {schedule.name!r}")


def set_lr(optimizer: Optimizer, lr: float) -> None:
    """Apply ``lr`` to every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr
