"""One translation of operating-system failures into a clear :class:`UnetlabError`.

A read-only folder, a full disk, a file where a folder should be, a symbolic link loop: the
operating system reports each as an ``OSError`` with an errno. The user needs the path, what is
wrong with it in words, and what to do, not ``unexpected PermissionError``. Writers that know
their path call :func:`os_error` (or use :func:`translated`); the command line translates any
``OSError`` that still reaches it, so every such failure exits with code 2.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from unetlab.errors import UnetlabError

_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_PERMISSION = {errno.EACCES, errno.EPERM}


class FileSystemError(UnetlabError):
    """A file operation failed for a reason outside unetlab (permissions, space, links)."""

    def __init__(self, message: str, path: str | Path | None, hint: str, errno_: int | None):
        super().__init__(message, path, hint)
        self.errno = errno_


def os_error(exc: OSError, path: str | Path | None = None, action: str = "write") -> UnetlabError:
    """The user-facing error for ``exc``; ``path`` is used when the exception names none.

    ``action`` ("write", "read", "create the folder", ...) completes "cannot ACTION".
    """
    if isinstance(exc, UnetlabError):
        return exc
    where = exc.filename if exc.filename is not None else path
    where = os.fsdecode(where) if where is not None else None
    code = exc.errno
    if code in _DISK_FULL:
        message = f"cannot {action}: the disk is full (no space left on the device)"
        hint = "free some space or write to another disk; nothing half-written was left behind"
    elif code == errno.EROFS:
        message = f"cannot {action}: the file system is read-only"
        hint = "write to a folder on a writable disk (e.g. choose another --out)"
    elif code in _PERMISSION:
        message = f"cannot {action}: permission denied"
        hint = "write to a folder you own (e.g. choose another --out), or fix its permissions"
    elif code == errno.ENOTDIR:
        blocker = _file_in_the_way(where)
        message = f"cannot {action}: {blocker or 'a part of this path'} is a file, not a folder"
        hint = "choose a folder path (e.g. another --out / --out-dir), or move that file away"
    elif code == errno.EEXIST:
        message = f"cannot {action}: it already exists" + (
            " as a file, where a folder is needed" if where and Path(where).is_file() else ""
        )
        hint = "choose another path, or move the existing file away"
    elif code == errno.EISDIR:
        message = f"cannot {action}: this is a folder, where a file is needed"
        hint = "give a file path (e.g. model.onnx, report.json) instead of a folder"
    elif code == errno.ELOOP:
        message = f"cannot {action}: symbolic link loop (the link points back to itself)"
        hint = "remove or fix the symbolic link"
    elif code == errno.ENOENT and where is not None and os.path.islink(where):
        message = f"cannot {action}: broken symbolic link (it points to {os.readlink(where)}, " \
            "which does not exist)"
        hint = "fix or remove the link"
    elif code == errno.ENOENT:
        message = f"cannot {action}: no such file or folder"
        hint = "check the path"
    elif code == errno.ENAMETOOLONG:
        message = f"cannot {action}: the name is too long for this file system"
        hint = "use a shorter name or a shorter path"
    else:
        reason = exc.strerror or str(exc) or type(exc).__name__
        message = f"cannot {action}: {reason}"
        hint = "check the path and the disk it is on"
    return FileSystemError(message, where, hint, code)


_FILE_SYSTEM = {
    errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.ENOTDIR, errno.EISDIR,
    errno.EEXIST, errno.ELOOP, errno.ENOENT, errno.ENAMETOOLONG, errno.EIO, errno.EMFILE,
    errno.ENFILE, errno.EXDEV, errno.EBUSY, errno.EFBIG, *_DISK_FULL,
}


def is_os_level(exc: BaseException) -> bool:
    """True for an ``OSError`` about the file system (read-only, full, permission, links ...).
    Libraries also raise ``OSError`` for bad file contents (Pillow without an errno, torch with
    EINVAL for a truncated file): those are not the disk's fault and are not translated."""
    return isinstance(exc, OSError) and exc.errno in _FILE_SYSTEM


@contextmanager
def translated(path: str | Path | None = None, action: str = "write") -> Iterator[None]:
    """Inside the block an OS-level ``OSError`` becomes the user-facing error for ``path``."""
    try:
        yield
    except OSError as exc:
        if not is_os_level(exc):
            raise
        raise os_error(exc, path, action) from None


def _file_in_the_way(path: str | None) -> str | None:
    """The first existing non-folder among the parents of ``path`` (the cause of ENOTDIR)."""
    if path is None:
        return None
    for parent in reversed(Path(path).parents):
        if parent.exists() and not parent.is_dir():
            return str(parent)
    candidate = Path(path)
    return str(candidate) if candidate.exists() and not candidate.is_dir() else None
