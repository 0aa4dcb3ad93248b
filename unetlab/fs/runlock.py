"""One process per run folder: ``RUN/.unetlab.lock``.

A new run gets a folder of its own (created exclusively, numbered when the name is taken), but
a second process can still target an existing run: ``--resume`` of a run that is training, or
two resumes at once. Both would write one folder and leave one session's ``last.pt`` beside the
other's ``best.pt``. The lock file is created
exclusively (``O_EXCL``) and holds the owner's PID, host, process start time and command, so a
refusal can say who holds the run. A lock left by a process that died (SIGKILL, power cut) is
recognised on the same host (no such PID, or the PID now belongs to a process started later)
and taken over with a note naming the dead owner; a lock from another host cannot be checked
and is refused with the way to remove it.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from unetlab.errors import UnetlabError
from unetlab.fs.oserrors import os_error, translated

LOCK_NAME = ".unetlab.lock"


class RunFolderBusy(UnetlabError):
    """Another live process holds this run folder."""


class RunLock:
    """``with RunLock(run_dir):`` holds the run folder for this process (see module doc).

    ``notes`` collects what a user should be told (a stale lock taken over).
    """

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.notes: list[str] = []
        self.held = False

    def acquire(self) -> RunLock:
        with translated(self.run_dir, "create the run folder"):
            self.run_dir.mkdir(parents=True, exist_ok=True)
        me = _identity()
        for _ in range(3):  # a stale lock is removed, then creation is tried again
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:  # held, or left by a dead process
                self._handle_existing()
                continue
            except OSError as exc:
                raise os_error(exc, self.path, "lock the run folder") from None
            with os.fdopen(fd, "w") as handle:
                json.dump(me, handle)
            self.held = True
            return self
        raise RunFolderBusy(
            "could not lock the run folder (its lock file keeps reappearing)", self.run_dir
        )

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        owner = read_owner(self.path)
        if owner is not None and owner.get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def _handle_existing(self) -> None:
        owner = read_owner(self.path)
        if owner is None:  # being written this instant, or garbage
            time.sleep(0.1)
            owner = read_owner(self.path)
        who = describe_owner(owner)
        if owner is not None and owner.get("host") == socket.gethostname():
            if not process_matches(owner):
                self.notes.append(
                    f"note: {self.path} was left by {who}, which is no longer running (killed?); "
                    "taking the run folder over"
                )
                self.path.unlink(missing_ok=True)
                return
            raise RunFolderBusy(
                f"this run folder is in use by {who}; two processes writing one run would mix "
                "their checkpoints and metrics",
                self.run_dir,
                "wait for it to finish, or stop it first",
            )
        raise RunFolderBusy(
            f"this run folder is locked by {who}, which cannot be checked from this host "
            f"({socket.gethostname()})",
            self.run_dir,
            f"if no unetlab process uses this run any more, delete {self.path}; otherwise wait "
            "for it to finish",
        )


def read_owner(path: Path) -> dict[str, Any] | None:
    """The owner recorded in a lock file (None if unreadable)."""
    try:
        owner = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def describe_owner(owner: dict[str, Any] | None) -> str:
    if owner is None:
        return "an unknown process (the lock file is unreadable)"
    started = owner.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "?"
    return (
        f"process {owner.get('pid')} on host {owner.get('host')} (started {when}: "
        f"{owner.get('command', '?')})"
    )


def process_matches(owner: dict[str, Any]) -> bool:
    """Whether the recorded owner is still running here (same PID and the same start time, so
    a PID reused by an unrelated process does not count)."""
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    recorded, current = owner.get("start_ticks"), _start_ticks(pid)
    return recorded is None or current is None or recorded == current


def _identity() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.time(),
        "start_ticks": _start_ticks(os.getpid()),
        "command": " ".join(["unetlab", *sys.argv[1:]])[:300],
    }


def _start_ticks(pid: int) -> int | None:
    """The process start time in clock ticks since boot (Linux ``/proc``; None elsewhere)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[19]) if len(fields) > 19 else None
