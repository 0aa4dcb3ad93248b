"""Progress for every long loop (training epochs, evaluate, predict, tiles, video frames).

In a terminal it is a tqdm bar with rate and ETA. When the stream is not a terminal (a log
file, a pipe, CI) a bar would write a ``\\r`` frame per update into the log, so plain lines are
written instead, about ten per loop (or every ``every`` items), each with the count, the rate
and the ETA. Messages (:meth:`Progress.write`) go above a bar without breaking it. This module
imports no torch, so torch-free commands (ONNX Runtime) use it too.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO


def is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is an interactive terminal (False for files, pipes, captures)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _duration(seconds: float) -> str:
    whole = max(0, round(seconds))
    minutes, seconds = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class Progress:
    """``total`` items of ``unit`` (None: unknown), labelled ``desc``; see the module docstring.

    ``enabled`` False shows nothing. ``stream``: where the bar or the plain lines go (default
    standard error, read when the object is made). ``every``: items between plain lines
    (default a tenth of ``total``, or 100 when the total is unknown). ``initial``: items
    already done (a resumed epoch). ``leave``: keep the finished bar on the screen. Use it as a
    context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str = "it",
        *,
        enabled: bool = True,
        stream: TextIO | None = None,
        every: int | None = None,
        initial: int = 0,
        leave: bool = True,
    ):
        self.total = total if total else None
        self.desc, self.unit, self.enabled = desc, unit, enabled
        self.stream = sys.stderr if stream is None else stream
        self.every = max(1, every or (math.ceil(self.total / 10) if self.total else 100))
        self.done = self.initial = initial
        self.started = time.perf_counter()
        self.postfix: dict[str, Any] = {}
        self.last_line = initial
        self.bar: Any = None
        if enabled and is_terminal(self.stream):
            from tqdm import tqdm

            self.bar = tqdm(
                total=self.total, initial=initial, desc=desc, unit=unit, leave=leave,
                file=self.stream, dynamic_ncols=True,
            )  # fmt: skip

    def update(self, count: int = 1, **postfix: Any) -> None:
        """``count`` more items done; ``postfix`` values (``loss=0.1``) are shown beside."""
        self.done += count
        if not self.enabled:
            return
        self.postfix.update(postfix)
        if self.bar is not None:
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)
            self.bar.update(count)
        elif self.done - self.last_line >= self.every or self.done == self.total:
            self._line()

    def write(self, message: str, file: TextIO | None = None) -> None:
        """A message line (default to standard output), above the bar in a terminal."""
        if self.bar is not None:
            self.bar.write(message, file=file or sys.stdout)
        else:
            print(message, file=file or sys.stdout, flush=True)

    def close(self) -> None:
        """End the bar; without a terminal, a last line if items were done since the last."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.enabled and self.done > self.last_line:
            self._line()
        self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _line(self) -> None:
        self.last_line = self.done
        elapsed = time.perf_counter() - self.started
        rate = (self.done - self.initial) / elapsed if elapsed > 0 else 0.0
        count = f"{self.done}/{self.total}" if self.total else f"{self.done}"
        parts = [f"{self.desc}: {count} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.done / self.total:.0f}%)"
        parts.append(f"{rate:.2f} {self.unit}/s")
        if self.total and rate > 0 and self.done < self.total:
            parts.append(f"ETA {_duration((self.total - self.done) / rate)}")
        parts.append(f"{_duration(elapsed)} elapsed")
        parts += [f"{key} {value}" for key, value in self.postfix.items()]
        print(", ".join(parts), file=self.stream, flush=True)
