"""What ``unetlab predict INPUT...`` means: image files, folders, glob patterns, videos."""

from __future__ import annotations

import glob
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from unetlab.data.io import IMAGE_EXTENSIONS, is_image_file
from unetlab.errors import UnetlabError
from unetlab.inference.video import VIDEO_EXTENSIONS, is_video_file


@dataclass(frozen=True)
class InputFile:
    path: Path
    kind: str  # "image" or "video"


def _classify(path: Path) -> InputFile | None:
    if is_image_file(path):
        return InputFile(path, "image")
    if is_video_file(path):
        return InputFile(path, "video")
    return None


def discover_inputs(specs: Sequence[str | Path]) -> list[InputFile]:
    """Expand each argument, in order, without duplicates.

    A file must be an image or a video; a folder gives its images and videos (not recursive,
    sorted); a pattern with ``*``, ``?`` or ``[`` is a glob (``**`` recurses). Each argument
    that yields nothing is an error naming it, so a typo never passes as "0 files predicted".
    """
    found: dict[Path, InputFile] = {}
    for spec in specs:
        text = str(spec)
        path = Path(text).expanduser()
        if path.is_dir():
            entries = sorted(p for p in path.iterdir() if p.is_file())
            items = [item for p in entries if (item := _classify(p))]
            if not items:
                raise UnetlabError(
                    "no images or videos in this folder",
                    path,
                    f"images end in {', '.join(IMAGE_EXTENSIONS)}; videos in "
                    f"{', '.join(VIDEO_EXTENSIONS)}",
                )
        elif path.is_file():
            item = _classify(path)
            if item is None:
                raise UnetlabError(
                    "not an image or video file (unknown ending)",
                    path,
                    f"images end in {', '.join(IMAGE_EXTENSIONS)}; videos in "
                    f"{', '.join(VIDEO_EXTENSIONS)}",
                )
            items = [item]
        elif glob.has_magic(text):
            matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
            items = [item for p in matches if p.is_file() and (item := _classify(p))]
            if not items:
                raise UnetlabError(
                    "the pattern matches no image or video file",
                    text,
                    "check the pattern; quote it so the shell does not expand it",
                )
        else:
            raise UnetlabError("no such file or folder", path, "check the path")
        for item in items:
            found.setdefault(item.path.resolve(), item)
    return list(found.values())
