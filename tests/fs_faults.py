"""Run the ``unetlab`` command in a child process with a simulated disk fault.

Used as ``python fs_faults.py ARGS...`` with, in the environment:

- ``FAULT_READONLY=<folder>``: creating a file or folder under it fails with EROFS, as on a
  read-only mount (``chmod`` cannot show this when the tests run as root);
- ``FAULT_DENIED=<folder>``: the same with EACCES (permission denied);
- ``FAULT_DISK_FULL=1``: every ``fsync`` fails with ENOSPC, as when a full disk reports the
  error at flush time (delayed allocation).

Everything else is the real command in a real process.
"""

from __future__ import annotations

import errno
import os
import sys


def _install() -> None:
    for variable, code in (("FAULT_READONLY", errno.EROFS), ("FAULT_DENIED", errno.EACCES)):
        if os.environ.get(variable):
            _refuse_writes_under(os.environ[variable], code)
    if os.environ.get("FAULT_DISK_FULL"):

        def full(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        os.fsync = full


def _refuse_writes_under(folder: str, code: int) -> None:
    """Creating or writing a file or folder under ``folder`` fails with ``code``."""
    root = os.path.realpath(folder)
    real_open, real_mkdir = os.open, os.mkdir

    def inside(path) -> bool:
        full = os.path.realpath(os.fsdecode(path))
        return full == root or full.startswith(root + os.sep)

    def fake_open(path, flags, mode=0o777, *, dir_fd=None):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and inside(path):
            raise OSError(code, os.strerror(code), os.fsdecode(path))
        return real_open(path, flags, mode, dir_fd=dir_fd)

    def fake_mkdir(path, mode=0o777, *, dir_fd=None):
        if inside(path):
            raise OSError(code, os.strerror(code), os.fsdecode(path))
        return real_mkdir(path, mode, dir_fd=dir_fd)

    os.open, os.mkdir = fake_open, fake_mkdir


if __name__ == "__main__":
    _install()
    from unetlab.cli.main import main

    sys.exit(main(sys.argv[1:]))
