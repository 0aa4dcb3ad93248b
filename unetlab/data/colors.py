"""Class colours: the PASCAL VOC colour map, and the palette a user's masks already carry."""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image

from unetlab.fs.text import INVISIBLE, check_unique_class_names, read_text

Color = tuple[int, int, int]

CLASS_LINE = re.compile(
    r"^(?P<name>.*?)[\s:,]+(?P<r>\d+)[\s,]+(?P<g>\d+)[\s,]+(?P<b>\d+)\s*$"
)
"""A ``classes.txt`` line with a colour: ``NAME R G B`` (whitespace, commas or a colon)."""


def read_class_lines(path: str | Path) -> list[tuple[int, str, Color | None]]:
    """:func:`class_lines` of a ``classes.txt`` file, read by the one text reader (a BOM,
    UTF-16 and CRLF are fine); a class name given twice is refused."""
    found = class_lines(read_text(path, "class list"))
    check_unique_class_names([name for _, name, _ in found], path)
    return found


def class_lines(text: str) -> list[tuple[int, str, Color | None]]:
    """The classes of a ``classes.txt``: ``(line number, name, colour or None)`` per class, in
    index order; blank lines and ``#`` comments are skipped."""
    found = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip().strip(INVISIBLE).strip()
        if line:
            found.append((number, *split_class_line(line)))
    return found


def split_class_line(line: str) -> tuple[str, Color | None]:
    """``"sky 128 128 128"`` -> ``("sky", (128, 128, 128))``; ``"sky"`` -> ``("sky", None)``."""
    match = CLASS_LINE.match(line.strip())
    if match is None or not match["name"].strip():
        return line.strip(), None
    return match["name"].strip(), (int(match["r"]), int(match["g"]), int(match["b"]))


def voc_colormap(n: int = 256) -> list[Color]:
    """The PASCAL VOC colour map (index bits spread over the high bits of R, G, B).

    It is what VOC-style tools write into palette PNGs, so masks written with it look familiar,
    and index 255 (ignore) gets VOC's cream border colour.
    """
    colors = []
    for index in range(n):
        r = g = b = 0
        value = index
        for shift in range(7, -1, -1):
            r |= (value & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        colors.append((r, g, b))
    return colors


def mask_palette(path: str | Path) -> list[Color] | None:
    """The 256-entry palette of a palette-mode mask file, or None for other modes/unreadable."""
    try:
        with Image.open(path) as image:
            if image.mode != "P":
                return None
            flat = image.getpalette() or []
    except Exception:
        return None
    flat = flat + [0] * (768 - len(flat))
    return [tuple(flat[i : i + 3]) for i in range(0, 768, 3)]


def full_palette(colors: list[Color] | None) -> list[int]:
    """A flat 768-value palette: the given colours first, the VOC colour map for the rest."""
    base = voc_colormap()
    merged = list(colors or [])[:256] + base[len(colors or []) :]
    return [channel for color in merged for channel in color]
