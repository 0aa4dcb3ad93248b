"""The one reader of the small text files users write: split lists, ``classes.txt``, labelme
JSON.

Such files come from every editor and OS: a UTF-8 byte-order mark (Windows Notepad), UTF-16
(PowerShell's ``>``), CRLF or lone CR line ends. Read naively, a BOM glues itself invisibly to
the first id (``\\ufeffshape_0000`` matches no file) and UTF-16 reads as garbage. Here the
encoding comes from the BOM (UTF-8, UTF-16 LE/BE, UTF-32), else UTF-8; text that is none of
these is refused naming the file and the byte, and every line end is accepted.
"""

from __future__ import annotations

import codecs
import json
from pathlib import Path
from typing import Any

from unetlab.errors import UnetlabError
from unetlab.fs.oserrors import translated

_BOMS = (  # longest first: the UTF-32 LE mark starts with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
INVISIBLE = "\ufeff\u200b\u200e\u200f"  # stray BOMs, zero-width space, direction marks


def read_text(path: str | Path, what: str = "text file") -> str:
    """The text of ``path`` (see module doc); line ends are kept as written."""
    path = Path(path)
    with translated(path, f"read the {what}"):
        data = path.read_bytes()
    encoding = "utf-8"
    for bom, name in _BOMS:
        if data.startswith(bom):
            data, encoding = data[len(bom) :], name
            break
    else:
        if len(data) >= 4 and data[1::2].count(0) > len(data) // 4:
            encoding = "utf-16-le"  # no BOM, but every other byte is 0: UTF-16 LE text
        elif len(data) >= 4 and data[0::2].count(0) > len(data) // 4:
            encoding = "utf-16-be"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise UnetlabError(
            f"the {what} is not {encoding.upper()} text (byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start} cannot be decoded)",
            path,
            "save it as UTF-8 text (any editor's 'Save as' offers the encoding)",
        ) from None
    if "\x00" in text:
        raise UnetlabError(
            f"the {what} holds NUL characters: it is a binary file, not text",
            path,
            f"pass a plain text {what}",
        )
    return text


def read_lines(path: str | Path, what: str = "text file", comments: bool = False) -> list[str]:
    """Non-blank lines of ``path``, stripped of spaces and invisible marks; CRLF/CR/LF alike.
    With ``comments``, lines starting with ``#`` are skipped too."""
    lines = []
    for line in read_text(path, what).splitlines():
        text = line.strip().strip(INVISIBLE).strip()
        if text and not (comments and text.startswith("#")):
            lines.append(text)
    return lines


def check_unique_class_names(names: list[str], source: str | Path | None = None) -> None:
    """Two classes with one name make ``iou_<name>`` columns collide and pick the wrong class."""
    seen: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in seen:
            raise UnetlabError(
                f"class name '{name}' is given twice (classes {seen[name]} and {index}); every "
                "class needs its own name, or its scores and columns would be mixed up",
                source,
                "rename one of them (e.g. a numbered suffix)",
            )
        seen[name] = index


def read_json(path: str | Path, what: str = "JSON file") -> Any:
    """A JSON document, with the file and the line named when it is not valid."""
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UnetlabError(
            f"not a readable JSON file ({exc.msg} at line {exc.lineno}, column {exc.colno})",
            path,
            "check the file: it may be truncated or edited by hand",
        ) from None
