"""The one way unetlab writes a file: whole or not at all, with the user's umask, never over a
file it did not create.

Every output (checkpoints, exports, masks, overlays, reports, metrics.csv, config.yaml, plots,
converted datasets) goes through :func:`write_file`, :func:`write_bytes`, :func:`write_text` or
:func:`atomic_path`:

1. **Never over someone else's file.** If the target exists and was not written by this
   invocation (see :func:`begin_invocation`), the write is refused with a clear error unless
   ``overwrite=True`` (the commands' ``--overwrite``). Without ``overwrite`` the new file is
   put in place with ``os.link``, which fails if a file appeared meanwhile (another process),
   so nothing is clobbered even in a race.
2. **Whole or not at all.** The data go to a temp file in the same folder, are flushed and
   fsynced, then renamed over the target (``os.replace``): a kill at any instant leaves the old
   file or the new one. The temp file's name holds the writer's PID, so a later write can tell
   a dead writer's leftover from a live one's (:func:`remove_stale_temps`).
3. **The user's umask.** The temp file is created with mode ``0o666`` and the kernel applies
   the umask (``tempfile.mkstemp`` would make it ``0600``): a mask under umask 022 is ``0644``.
4. **A clear error.** Any ``OSError`` (read-only, disk full, permission, a file in the way)
   becomes one :class:`~unetlab.errors.UnetlabError` paragraph naming the target.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import BinaryIO

from unetlab.errors import UnetlabError
from unetlab.fs.oserrors import is_os_level, os_error, translated
from unetlab.fs.testpoint import pause_point

_CREATED: set[str] = set()
"""Absolute paths of the files this invocation wrote (so it may replace them)."""

_OVERWRITE: ContextVar[bool] = ContextVar("unetlab_overwrite", default=False)
"""Set by :func:`overwriting`: the user allowed replacing existing outputs (``--overwrite``)."""


class OutputExists(UnetlabError):
    """A file to write exists already and this invocation did not create it."""


def begin_invocation() -> None:
    """Forget which files were written: the next command starts with a clean slate.

    The command line calls this once per command; in a Python session the slate lasts for the
    whole process (a notebook may rerun a cell that rewrites its own outputs).
    """
    _CREATED.clear()


@contextmanager
def overwriting(allowed: bool = True) -> Iterator[None]:
    """Inside the block, every write may replace existing files (``--overwrite``), so the
    permission reaches deep writers (plots, panels) without a parameter on each."""
    token = _OVERWRITE.set(allowed or _OVERWRITE.get())
    try:
        yield
    finally:
        _OVERWRITE.reset(token)


def created_here(path: str | Path) -> bool:
    """True when this invocation wrote ``path``."""
    return os.path.abspath(path) in _CREATED


def check_writable(path: str | Path, overwrite: bool = False) -> None:
    """Raise :class:`OutputExists` if writing ``path`` would replace a file we did not create."""
    if overwrite or _OVERWRITE.get() or created_here(path) or not os.path.lexists(path):
        return
    if os.path.isdir(path) and not os.path.islink(path):
        raise UnetlabError(
            "a folder is in the way of a file to write", path, "choose another output path"
        )
    raise OutputExists(
        "exists already and was not written by this command; unetlab does not replace files it "
        "did not create",
        path,
        "choose another output path (--out), or pass --overwrite to replace it",
    )


def refuse_existing(
    paths: Iterable[str | Path], overwrite: bool = False, inputs: Iterable[str | Path] = ()
) -> None:
    """Check a whole plan of outputs before any work: one error listing what is in the way.

    An output that is one of the ``inputs`` is refused even with ``overwrite``: the command
    would destroy what it is reading.
    """
    outputs = [Path(p) for p in paths]
    sources = {os.path.realpath(p) for p in inputs}
    clash = [p for p in outputs if os.path.realpath(p) in sources]
    if clash:
        raise UnetlabError(
            f"the output {clash[0].name} would replace an input of this command",
            clash[0],
            "write the outputs to another folder (--out)",
        )
    if overwrite or _OVERWRITE.get():
        return
    taken = [p for p in outputs if os.path.lexists(p) and not created_here(p)]
    if not taken:
        return
    shown = ", ".join(p.name for p in taken[:3]) + (f" and {len(taken) - 3} more" if
                                                     len(taken) > 3 else "")
    raise OutputExists(
        f"{len(taken)} output file(s) exist already ({shown}) and were not written by this "
        "command; unetlab does not replace files it did not create",
        taken[0].parent,
        "choose another output folder (--out), or pass --overwrite to replace them",
    )


def make_folder(path: str | Path) -> Path:
    """``mkdir -p`` with a clear error (a file in the way, read-only, permission)."""
    path = Path(path)
    with translated(path, "create the folder"):
        path.mkdir(parents=True, exist_ok=True)
    return path


def write_file(
    path: str | Path,
    write: Callable[[BinaryIO], object],
    *,
    overwrite: bool = False,
    durable: bool = False,
) -> Path:
    """Write ``path`` by calling ``write(handle)`` on a binary temp file (see module doc).

    ``durable`` also fsyncs the folder, so the rename itself survives a power cut (used for
    checkpoints, whose loss costs hours).
    """

    with atomic_path(path, overwrite=overwrite, durable=durable) as temp, open(temp, "wb") as out:
        recorder = _RecordingWriter(out)
        try:
            write(recorder)  # type: ignore[arg-type]
        except Exception:
            if recorder.error is not None:  # torch wraps a failed write in a RuntimeError
                raise recorder.error from None
            raise
    return Path(path)


def write_bytes(path: str | Path, data: bytes, **options: bool) -> Path:
    def write(handle: BinaryIO) -> None:
        handle.write(data)

    return write_file(path, write, **options)


def write_text(path: str | Path, text: str, **options: bool) -> Path:
    """UTF-8 text, newlines written as given (no platform translation)."""
    return write_bytes(path, text.encode("utf-8"), **options)


@contextmanager
def atomic_path(
    path: str | Path, *, overwrite: bool = False, durable: bool = False
) -> Iterator[Path]:
    """A temp path to write by name (for libraries that take a file name: ONNX, OpenCV video,
    matplotlib); on leaving the block without error it becomes ``path`` (see module doc).

    The temp name ends like ``path`` (``.a.png.<pid>-<token>.tmp.png``) so that writers that
    pick the format from the ending still do.
    """
    path = Path(path)
    check_writable(path, overwrite)
    make_folder(path.parent)
    temp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp{path.suffix}")
    try:  # 0o666: the kernel applies the umask, as for any file the user's programs create
        os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as exc:
        if not is_os_level(exc):
            raise
        raise _about_target(exc, path) from None
    try:
        try:
            yield temp
            _fsync_file(temp)
            pause_point(f"before-commit:{path.name}")
            _commit(temp, path, replace=overwrite or _OVERWRITE.get() or created_here(path))
            if durable:
                _fsync_folder(path.parent)
        except OSError as exc:
            raise _about_target(exc, path) from None
    finally:
        if os.path.lexists(temp):
            os.unlink(temp)
    _CREATED.add(os.path.abspath(path))


def _about_target(exc: OSError, path: Path) -> UnetlabError:
    """The error for ``path`` itself: the user never asked for the temp file the OS names."""
    if exc.errno is None or exc.filename is None:
        return os_error(exc, path)
    return os_error(OSError(exc.errno, exc.strerror), path)


def remove_stale_temps(path: str | Path) -> list[Path]:
    """Delete temp files of ``path`` left by writers that are no longer running (a SIGKILL
    mid-write); a live writer's temp file is left alone. Returns what was removed."""
    path = Path(path)
    removed: list[Path] = []
    try:
        candidates = list(path.parent.glob(f".{path.name}.*.tmp{path.suffix}"))
    except OSError:
        return removed
    for temp in candidates:
        owner = temp.name[len(path.name) + 2 :].split("-", 1)[0]
        if owner.isdigit() and not _alive(int(owner)):
            temp.unlink(missing_ok=True)
            removed.append(temp)
    return removed


class _RecordingWriter:
    """A file handle that remembers the ``OSError`` a write raised (disk full), because some
    writers (``torch.save``) turn it into an unrelated ``RuntimeError``."""

    def __init__(self, handle: BinaryIO):
        self.handle = handle
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.handle.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.handle.flush()

    def __getattr__(self, name: str):
        return getattr(self.handle, name)


def _commit(temp: Path, path: Path, replace: bool) -> None:
    if replace:
        os.replace(temp, path)
        return
    try:
        os.link(temp, path)  # fails if path appeared meanwhile: never clobbers
    except FileExistsError:
        check_writable(path, overwrite=False)  # raises OutputExists naming it
        raise
    except OSError:  # no hard links here (FAT, some network file systems): rename instead
        check_writable(path, overwrite=False)
        os.replace(temp, path)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some systems cannot open a folder; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
