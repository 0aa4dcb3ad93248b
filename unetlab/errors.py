"""User-facing errors.

Everything a user can get wrong (a file, a value, an option) raises :class:`UnetlabError`
with the offending path and a hint on what to do. The CLI prints these as one paragraph and
exits non-zero; it shows a traceback only with ``--debug``.
"""

from __future__ import annotations

from pathlib import Path


class UnetlabError(Exception):
    """An error caused by the user's input, reported without a stack trace.

    Args:
        message: what is wrong, in one or two sentences.
        path: the file or folder it concerns, if any (printed first).
        hint: what to do about it.
    """

    def __init__(self, message: str, path: str | Path | None = None, hint: str | None = None):
        self.message = message
        self.path = None if path is None else str(path)
        self.hint = hint
        super().__init__(self.format())

    def format(self) -> str:
        text = f"{self.path}: {self.message}" if self.path else self.message
        if self.hint:
            text += f"\n  What to do: {self.hint}"
        return text
