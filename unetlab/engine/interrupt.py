"""Ctrl-C during training: finish the current step, save, stop; a second Ctrl-C aborts.

SIGTERM is treated like the first Ctrl-C: ``torchrun`` forwards it to its workers when it is
interrupted, and cluster schedulers send it before killing a job, so both end with a
resumable ``last.pt``.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GracefulInterrupt:
    """Context manager that turns the first SIGINT/SIGTERM into a flag the loop polls.

    Outside the main thread (a notebook's worker, a test thread) signals cannot be caught, so
    it does nothing there and Ctrl-C behaves as usual.
    """

    def __init__(self, message: str = ""):
        self.requested = False
        self.message = message
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested and signum == signal.SIGINT:  # second Ctrl-C: give up at once
            raise KeyboardInterrupt
        if not self.requested and self.message:
            print(self.message, flush=True)
        self.requested = True

    def __enter__(self) -> GracefulInterrupt:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]


def ignore_interrupts_in_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: Ctrl-C reaches every process of the terminal's group;
    workers ignore it so the main process can finish its step and stop them itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
