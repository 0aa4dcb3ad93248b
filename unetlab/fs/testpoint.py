"""Named pause points, so a test can kill a real process at an exact instant.

Killing a process "somewhere around" a write with a timer is a race; these points make the
instant known. With ``UNETLAB_PAUSE_AT=<point>`` and ``UNETLAB_PAUSE_FILE=<file>`` set, the
process reaching ``<point>`` (``<point>#<n>``: the n-th time) creates ``<file>`` and then
waits there forever, for the test to send its signal. Without both variables a pause point
is one dictionary lookup.
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
    marker = os.environ.get("UNETLAB_PAUSE_FILE")
    _REACHED[name] = _REACHED.get(name, 0) + 1
    if not marker or _REACHED[name] != int(wanted.partition("#")[2] or 1):
        return
    with open(marker, "w") as handle:
        handle.write(f"{os.getpid()} {name}\n")
    while True:
        time.sleep(0.05)
