"""What a run reports while it trains: progress, log lines, ``metrics.csv``, TensorBoard.

Only rank 0 reports (the trainer builds these objects there and no-op stand-ins elsewhere).
In a terminal each epoch gets a progress bar (loss, learning rate, it/s, ETA); when the output
goes to a file or a pipe, plain lines every ``log_every`` steps are written instead, so logs
stay readable (:mod:`unetlab.progress`).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

FIRST_COLUMNS = ("epoch", "lr", "train_loss", "val_loss", "miou", "pixel_acc")


class Progress:
    """Per-epoch progress (:class:`unetlab.progress.Progress`: a bar in a terminal, a plain
    line every ``log_every`` steps otherwise) and the run's log lines."""

    def __init__(
        self, enabled: bool, epochs: int, log_every: int, budget_minutes: float | None = None
    ):
        self.enabled, self.epochs, self.log_every = enabled, epochs, log_every
        self.budget_minutes = budget_minutes
        self.bar: Any = None
        self.done = 0

    def start_epoch(self, epoch: int, steps: int, done: int = 0) -> None:
        """``epoch`` counts from 1; ``done`` steps were already made (resumed mid-epoch)."""
        from unetlab.progress import Progress as Bar

        self.done = done
        self.bar = Bar(
            steps, self.epoch_label(epoch), enabled=self.enabled, every=self.log_every,
            initial=done,
        )  # fmt: skip

    def epoch_label(self, epoch: int) -> str:
        """``epoch 3/40``; a run the clock ends shows its budget, not a sentinel epoch count:
        ``epoch 3 (20 min budget)``."""
        from unetlab.engine.config import UNTIL_THE_CLOCK

        label = f"epoch {epoch}"
        if self.epochs < UNTIL_THE_CLOCK:
            label += f"/{self.epochs}"
        if self.budget_minutes:
            label += f" ({round(self.budget_minutes, 1):g} min budget)"
        return label

    def step(self, loss: float, lr: float) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1, loss=f"{loss:.4f}", lr=f"{lr:.2e}")

    def end_epoch(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def info(self, message: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(message)
        else:
            print(message, flush=True)


def format_row(row: dict[str, Any]) -> str:
    """One line summary of an epoch's metrics."""
    parts = [f"epoch {row['epoch']}"]
    for key, label in (("train_loss", "train loss"), ("val_loss", "val loss"),
                       ("miou", "val mIoU"), ("pixel_acc", "pixel acc")):
        value = row.get(key)
        if isinstance(value, float) and math.isfinite(value):
            parts.append(f"{label} {value:.4f}")
    parts.append(f"lr {row['lr']:.2e}")
    parts.append(f"{row['seconds']:.1f} s")
    return " | ".join(parts)


def write_metrics_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Rewrite ``metrics.csv`` from the full history (kept in the checkpoint, so a resumed run's
    CSV always matches its checkpoint); written atomically (:mod:`unetlab.fs.atomic`)."""
    from unetlab.fs.atomic import write_text

    columns = list(FIRST_COLUMNS)
    for row in rows:
        columns += [key for key in row if key not in columns and key != "seconds"]
    columns.append("seconds")
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _cell(value) for key, value in row.items()})
    write_text(path, buffer.getvalue())


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return value


class TensorBoard:
    """Scalars to ``RUN/tensorboard`` when ``torch.utils.tensorboard`` can be imported."""

    def __init__(self, log_dir: Path, enabled: bool, purge_step: int | None = None):
        self.writer: Any = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # tensorboard not installed: silently without it
            return
        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)

    def scalars(self, values: dict[str, Any], step: int) -> None:
        if self.writer is None:
            return
        for key, value in values.items():
            if isinstance(value, int | float) and math.isfinite(value) and key != "epoch":
                self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
