"""Output names that never collide and never leave their folder.

Outputs are named after their inputs (``a.png`` -> ``a_mask.png``). Inputs whose stems collide
(``a.png`` and ``a.jpg``; ``a.png`` from two folders; ``a.png``, ``a.jpg`` and ``a_2.png``)
must still get distinct outputs, or the second silently replaces the first. Names coming from
the user (a run ``--name``, ids in split files) must not contain a path that leads out of the
folder they are meant for.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from unetlab.errors import UnetlabError


def unique_names(stems: Sequence[str]) -> list[str]:
    """One distinct name per stem, in order: a stem keeps its name when it is the first to use
    it, later ones get ``_2``, ``_3`` ... skipping every name already taken, by any input
    (compared case-insensitively: on macOS and Windows ``A.png`` and ``a.png`` are one file).
    """
    taken = {stem.casefold() for stem in stems}  # no suffix may land on another input's stem
    first: set[str] = set()
    names = []
    for stem in stems:
        key = stem.casefold()
        if key not in first:
            first.add(key)
            names.append(stem)
            continue
        number = 2
        while f"{stem}_{number}".casefold() in taken:
            number += 1
        name = f"{stem}_{number}"
        taken.add(name.casefold())
        names.append(name)
    return names


def safe_component(name: str, what: str = "name") -> str:
    """``name`` if it is one plain folder/file name; a clear error if it would escape (an
    absolute path, ``..``, a separator) or is empty."""
    text = str(name)
    if (
        not text.strip()
        or text in (".", "..")
        or "/" in text
        or "\\" in text
        or "\x00" in text
        or re.match(r"^[A-Za-z]:", text)
    ):
        raise UnetlabError(
            f"the {what} '{text}' is not a plain name: it must not be empty, contain '/' or '\\', "
            "or be '.' or '..'",
            hint=f"use a {what} made of letters, digits, '-', '_' and '.'",
        )
    return text

