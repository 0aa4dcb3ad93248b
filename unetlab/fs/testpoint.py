"""Named pause points, so a test can kill a real process at an exact instant.

Killing a process "somewhere around" a write with a timer is a race; these points make the
instant known. With ``UNETLAB_PAUSE_AT=<point>`` set, the process reaching ``<point>``
(``<point>#<n>``: the n-th time) creates ``UNETLAB_PAUSE_FILE`` (if set) and then waits there,
for the test to send its signal: until the file ``UNETLAB_PAUSE_RELEASE`` exists (a signal
handler then sees the rest of the step run), or forever without it (for SIGKILL). Without
``UNETLAB_PAUSE_AT`` a pause point is one environment lookup.

Points: ``after-step:<global step>`` (the trainer, after each optimizer step),
``between-last-and-best`` (after ``last.pt`` is written, before ``best.pt``),
``before-commit:<file name>`` (the atomic writer, the temp file complete, before the rename).
"""

from __future__ import annotations

import os
import time

_REACHED: dict[str, int] = {}


def pause_point(name: str) -> None:
    """Block here forever if the environment names this point (see module doc);
    ``<point>#<n>`` pauses the n-th time the point is reached."""
    wanted = os.environ.get("UNETLAB_PAUSE_AT")
    if not wanted or wanted.split("#")[0] != name:
        return
    _REACHED[name] = _REACHED.get(name, 0) + 1
    if _REACHED[name] != int(wanted.partition("#")[2] or 1):
        return
    marker = os.environ.get("UNETLAB_PAUSE_FILE")
    if marker:
        with open(marker, "w") as handle:
            handle.write(f"{os.getpid()} {name}\n")
    release = os.environ.get("UNETLAB_PAUSE_RELEASE")
    while not (release and os.path.exists(release)):
        time.sleep(0.01)
