"""What can be wrong with a data file, phrased once for the validator and the training reader.

``check_dataset`` collects :class:`Problem` records for the whole dataset; the training-time
reader raises the very same message as a :class:`DataFileError` the moment it meets a bad
file. Keeping the wording here means a user sees one explanation, whichever path found it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unetlab import IGNORE_INDEX
from unetlab.errors import UnetlabError

# Problem kinds (stable names: tests and reports group problems by them).
MISSING = "missing_file"
UNREADABLE = "unreadable"
RGB_MASK = "rgb_mask"
JPEG_MASK = "jpeg_mask"
BAD_MASK = "bad_mask"
SIZE_MISMATCH = "size_mismatch"
VALUES = "mask_values"
BINARY_0_255 = "binary_0_255"
EMPTY_SPLIT = "empty_split"
DUPLICATE = "duplicate_id"
CHANNELS = "channels"
CLASSES = "classes"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one file (or folder), with what to do about it."""

    kind: str
    path: str
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}"
        return f"{text}. What to do: {self.hint}" if self.hint else text

    def to_error(self) -> DataFileError:
        return DataFileError(self.kind, self.message, self.path, self.hint)


class DataFileError(UnetlabError):
    """A :class:`UnetlabError` about a data file, tagged with its problem ``kind``."""

    def __init__(self, kind: str, message: str, path: str | Path | None, hint: str | None = None):
        self.kind = kind
        super().__init__(message, path, hint)

    @property
    def problem(self) -> Problem:
        return Problem(self.kind, self.path or "", self.message, self.hint)


def shorten(items: Sequence[object], limit: int = 8) -> str:
    """``a, b, c (and 5 more)``: lists in messages stay one readable line."""
    shown = ", ".join(str(item) for item in items[:limit])
    return shown + (f" (and {len(items) - limit} more)" if len(items) > limit else "")


def size_problem(
    image_path: Path, mask_path: Path, image_hw: tuple[int, int], mask_hw: tuple[int, int]
) -> Problem | None:
    """A mask must cover its image pixel for pixel; say so (and suspect EXIF) when it does not."""
    if tuple(image_hw) == tuple(mask_hw):
        return None
    hint = "masks must have the same width and height as their images; re-export the mask"
    if tuple(image_hw) == tuple(mask_hw)[::-1]:
        hint += (
            " (width and height are swapped: the image may carry an EXIF rotation tag; unetlab "
            "reads pixels as stored, so save the image rotated for real)"
        )
    return Problem(
        SIZE_MISMATCH,
        str(mask_path),
        f"mask is {mask_hw[1]}x{mask_hw[0]} (w x h) but its image {image_path.name} is "
        f"{image_hw[1]}x{image_hw[0]}",
        hint,
    )


def present_values(mask: np.ndarray) -> np.ndarray:
    """Sorted distinct values of a uint8 mask, via a histogram (much faster than np.unique)."""
    return np.flatnonzero(value_counts(mask))


def value_counts(mask: np.ndarray) -> np.ndarray:
    """Pixel count of each value 0..255 of a uint8 mask."""
    return np.bincount(mask.ravel(), minlength=256)


def mask_values_problem(
    mask_path: Path, values: Collection[int] | np.ndarray, num_classes: int
) -> Problem | None:
    """Values that are neither a class index ``< num_classes`` nor the ignore value 255."""
    bad = [int(v) for v in values if v >= num_classes and v != IGNORE_INDEX]
    if not bad:
        return None
    shown = shorten(bad, 10)
    values_set = {int(v) for v in values}
    hint = (
        f"a mask holds class indices 0..{num_classes - 1} and {IGNORE_INDEX} for pixels to "
        "ignore; fix the mask, or set the number of classes (--classes) if it is wrong"
    )
    if len(values_set) == 2 and 0 in values_set:
        hint = (
            f"this looks like a two-valued (binary) mask with foreground {bad[0]}; map that value "
            "to 1 (0 = background, 1 = foreground)"
        )
    return Problem(
        VALUES,
        str(mask_path),
        f"mask values {shown} are not classes (num_classes={num_classes})",
        hint,
    )


def binary_0_255_problem(masks: Sequence[Path], mask_dir: Path) -> Problem:
    """Masks that hold only 0 and 255: 255 would be ignored and the foreground never learnt."""
    what = "holds only the values 0 and 255"
    if len(masks) == 1:
        where, subject = masks[0], "mask"
    else:
        shown = shorten([p.name for p in masks], 3)
        where, subject = mask_dir, f"{len(masks)} masks ({shown})"
        what = "hold only the values 0 and 255"
    return Problem(
        BINARY_0_255,
        str(where),
        f"{subject} {what}: this is a 0/255 binary mask, and 255 means 'ignore' to unetlab, so "
        "the foreground would never be learnt",
        f"run 'unetlab data fix-binary {mask_dir}' to rewrite 0/255 masks as 0/1",
    )


class DatasetProblems(UnetlabError):
    """Several problems found at once; ``problems`` holds them all, the message the first ones."""

    def __init__(self, root: str | Path, problems: Sequence[Problem], max_listed: int = 20):
        self.problems = list(problems)
        listed = "\n".join(f"  - {problem}" for problem in self.problems[:max_listed])
        more = len(self.problems) - max_listed
        if more > 0:
            listed += f"\n  ... and {more} more (run 'unetlab data check {root}' to see all)"
        super().__init__(
            f"{len(self.problems)} problems in the dataset:\n{listed}",
            root,
            "fix the files listed (each line says what is wrong and what to do), then run "
            f"'unetlab data check {root}' again",
        )


def split_problems(
    split: str,
    listed_in: Path,
    ids: Sequence[str],
    images: dict[str, list[Path]],
    masks: dict[str, list[Path]],
    image_dir: Path,
    mask_dir: Path,
) -> list[Problem]:
    """Empty splits, ids without an image or a mask, and ids with several files."""
    if not ids:
        if split == "all":
            return [
                Problem(
                    EMPTY_SPLIT,
                    str(image_dir),
                    "no images in this folder (looked for .png, .jpg, .jpeg, .bmp, .tif, .tiff, "
                    ".webp)",
                    "put the images here, one file per image",
                )
            ]
        return [
            Problem(
                EMPTY_SPLIT,
                str(listed_in),
                f"split '{split}' lists no ids",
                "write one id (a file name without its ending) per line, or run "
                "'unetlab data split' to make train/val lists",
            )
        ]
    problems = []
    no_image = {i for i in ids if i not in images}
    no_mask = {i for i in ids if i not in masks}
    for missing, what, where in (
        ([i for i in ids if i in no_image and i in no_mask], "image and no mask", image_dir.parent),
        ([i for i in ids if i in no_image and i not in no_mask], "image", image_dir),
        ([i for i in ids if i in no_mask and i not in no_image], "mask", mask_dir),
    ):
        if missing:
            problems.append(
                Problem(
                    MISSING,
                    str(listed_in),
                    f"{len(missing)} id(s) of split '{split}' have no {what} in {where}: "
                    f"{shorten(missing)}",
                    "add the files (named like the id, any image ending) or remove these ids "
                    "from the list",
                )
            )
    for folder, files, what in ((image_dir, images, "image"), (mask_dir, masks, "mask")):
        for sample_id in ids:
            if len(files.get(sample_id, ())) > 1:
                names = ", ".join(p.name for p in files[sample_id])
                problems.append(
                    Problem(
                        DUPLICATE,
                        str(folder),
                        f"id '{sample_id}' has several {what} files ({names})",
                        "keep one file per id; unetlab would not know which to use",
                    )
                )
    return problems
