"""CPU threads for every command: how many, and idle threads that sleep instead of spinning.

OpenMP's default wait policy keeps idle worker threads spinning for a while after each parallel
region. On a small or busy CPU (a laptop, a shared 2-core CI runner) those spinning threads
fight the other processes, and each other, for the cores: measured on 2 shared cores, a
demo-sized U-Net step ran 2-4x slower and ``predict`` of a 30-frame video 4-7x slower than with
``OMP_WAIT_POLICY=PASSIVE``. This module imports no torch, so torch-free commands (ONNX
Runtime) can use it too.
"""

from __future__ import annotations

import os
import sys

from unetlab.errors import UnetlabError


def configure_threads(threads: int | None = None) -> None:
    """Make idle OpenMP threads sleep (unless ``OMP_WAIT_POLICY`` is set) and, with
    ``threads``, use that many CPU threads.

    The wait policy is read once, when torch first loads OpenMP: it is only set here while
    torch is not imported yet, so call this before anything imports torch. ``threads`` sets
    ``OMP_NUM_THREADS`` (for libraries that load later) and, once torch is imported,
    ``torch.set_num_threads``; torch caps ``OMP_NUM_THREADS`` at the core count, so a caller
    that asked for more threads than cores calls this again once torch is loaded
    (:func:`unetlab.inference.open_model` and the trainer's callers do).
    """
    whole = isinstance(threads, int) and not isinstance(threads, bool)
    if threads is not None and (not whole or threads < 1):
        raise UnetlabError(f"threads must be a whole number >= 1, got {threads!r}")
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if threads is None:
        return
    os.environ["OMP_NUM_THREADS"] = str(int(threads))
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(int(threads))
