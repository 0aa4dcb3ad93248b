"""Small converters that turn what users have into what unetlab reads.

- :func:`make_splits`: train/val (and test, or k-fold) id lists from the files present (like
  VOC projects' ``voc_annotation.py``: shuffled with a fixed seed, 10% val by default);
- :func:`fix_binary_masks`: 0/255 masks -> 0/1 (255 means 'ignore' to unetlab);
- :func:`tiff_stack_to_slices`: a multi-page TIFF (an EM volume, a label stack) -> one PNG
  per page, 8- or 16-bit as stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image, ImageSequence

from unetlab import IGNORE_INDEX
from unetlab.data.colors import mask_palette
from unetlab.data.io import is_image_file, open_image, read_mask, write_mask
from unetlab.data.layouts import dataset_info
from unetlab.data.problems import UNREADABLE, DataFileError, present_values, shorten
from unetlab.data.splitting import split_ids
from unetlab.errors import UnetlabError
from unetlab.fs.atomic import write_text


def make_splits(
    root: str | Path,
    val_fraction: float = 0.1,
    seed: int = 0,
    overwrite: bool = False,
    *,
    test_fraction: float = 0.0,
    folds: int = 0,
    group: str | None = None,
    out_dir: str | Path | None = None,
) -> dict[str, list[str]]:
    """Write split lists of every id that has both an image and a mask; returns them by name.

    Plain layout: ``ROOT/splits/``; VOC layout: ``ImageSets/Segmentation/``. The ids are
    shuffled with ``seed`` (same files + same seed = same split). ``test_fraction`` of them go
    to ``test.txt`` first (held out of everything else). Then either ``val_fraction`` (of all
    ids) to ``val.txt`` and the rest to ``train.txt``, or, with ``folds`` K >= 2, K folds of the
    rest: ``fold<i>_val.txt`` is fold i and ``fold<i>_train.txt`` the other folds (train on one
    with ``--set data.train_split=fold1_train --set data.val_split=fold1_val``), and
    ``train.txt``/``val.txt`` are fold 0. A fraction above 0 holds out at least one id, and each
    list is written sorted. Existing split files are kept unless ``overwrite``: an official
    split is not something to lose by accident.

    ``group`` (``"auto"`` or a regular expression, see :mod:`unetlab.data.groups`) keeps each
    group (video sequence, stack) whole: held-out shares are made of whole groups, the closest
    to the fraction, so validation measures new sequences. ``out_dir`` writes the lists there
    instead of into the dataset (a read-only dataset; train with
    ``--set data.val_split=OUT/val.txt``).
    """
    info = dataset_info(root)
    ids = sorted(set(info.images) & set(info.masks))
    if not ids:
        raise UnetlabError(
            f"no image in {info.image_dir} has a mask of the same name in {info.mask_dir}",
            info.root,
            "name each mask like its image (a.jpg -> a.png)",
        )
    splits = split_ids(
        ids, val_fraction, seed, test_fraction=test_fraction, folds=folds, group=group,
        root=info.root,
    )
    target = (lambda name: Path(out_dir) / f"{name}.txt") if out_dir else info.split_file
    existing = [target(s) for s in splits if target(s).exists()]
    if existing and not overwrite:
        raise UnetlabError(
            f"split files exist already ({', '.join(str(p) for p in existing)})",
            info.root,
            "keep them, or pass --force (overwrite=True) to write a new split",
        )
    for name, listed in splits.items():
        write_text(target(name), "".join(f"{i}\n" for i in listed), overwrite=overwrite)
    return splits


@dataclass
class FixBinaryReport:
    """What :func:`fix_binary_masks` did with each mask."""

    converted: list[Path] = field(default_factory=list)  # were 0/255, now 0/1
    unchanged: list[Path] = field(default_factory=list)  # already 0/1 (copied with out_dir)
    skipped: dict[Path, str] = field(default_factory=dict)  # left alone, with the reason


def fix_binary_masks(
    mask_dir: str | Path, out_dir: str | Path | None = None, overwrite: bool = False
) -> FixBinaryReport:
    """Rewrite 0/255 masks as 0/1 palette PNGs (in place, or into ``out_dir``).

    Masks already 0/1 are reported (and copied to ``out_dir``, so it is a complete mask
    folder); masks with other values, two-valued or not, are reported and left alone, since
    which value is foreground is then a guess. Left alone too, with the reason: 0/255 masks of
    a dataset where 255 is the ignore label (:mod:`unetlab.data.binary`), and masks sharing an
    id with another file (``a.png`` and ``a.bmp``), whose conversion would replace the other.
    In place, a converted non-PNG mask is replaced by its PNG; into ``out_dir``, existing files
    are replaced only with ``overwrite``.
    """
    from collections import Counter

    from unetlab.data.binary import is_zero_255, zero_255_means_binary
    from unetlab.fs.atomic import refuse_existing

    mask_dir = Path(mask_dir)
    if not mask_dir.is_dir():
        raise UnetlabError("mask folder not found", mask_dir, "pass the folder holding the masks")
    paths = sorted(p for p in mask_dir.iterdir() if p.is_file() and is_image_file(p))
    if not paths:
        raise UnetlabError("no mask images in this folder", mask_dir, "check the path")
    in_place = out_dir is None or Path(out_dir).resolve() == mask_dir.resolve()
    target_dir = mask_dir if in_place or out_dir is None else Path(out_dir)
    report = FixBinaryReport()
    masks: dict[Path, np.ndarray] = {}
    for path in paths:
        try:
            masks[path] = read_mask(path)
        except DataFileError as exc:
            report.skipped[path] = exc.message
    values = {path: {int(v) for v in present_values(mask)} for path, mask in masks.items()}
    binary_dataset = zero_255_means_binary(values.values(), None)
    ids = Counter(path.stem.casefold() for path in paths)
    plan = {}
    for path, found in values.items():
        if ids[path.stem.casefold()] > 1:
            others = [p.name for p in paths if p.stem.casefold() == path.stem.casefold()]
            report.skipped[path] = (
                f"{len(others)} masks share the id '{path.stem}' ({', '.join(others)}); "
                "converting would replace one with another: left unchanged (delete or rename "
                "the wrong one)"
            )
        elif found <= {0, 1}:
            report.unchanged.append(path)
            if not in_place:
                plan[path] = masks[path]
        elif is_zero_255(found) and binary_dataset:
            plan[path] = (masks[path] == IGNORE_INDEX).astype(np.uint8)
            report.converted.append(path)
        elif is_zero_255(found):
            report.skipped[path] = (
                "0/255, but other masks in this folder show 255 is the ignore label here (classes "
                "above 1, or 1 beside 255): an object-less mask with an ignore band, left "
                "unchanged"
            )
        else:
            kind = "two values" if len(found) == 2 else f"{len(found)} values"
            report.skipped[path] = (
                f"{kind} ({shorten(sorted(found), 6)}), not a 0/255 mask: left unchanged"
            )
    targets = {path: target_dir / f"{path.stem}.png" for path in plan}
    if not in_place:
        refuse_existing(targets.values(), overwrite, paths)
    for path, mask in plan.items():
        target = targets[path]
        # in place, the mask itself is rewritten: that is what this command is for
        write_mask(target, mask, mask_palette(path), overwrite=overwrite or target == path)
        if in_place and target != path:
            path.unlink()  # its content now lives on, converted, in the new PNG
    return report


def tiff_stack_to_slices(
    tiff_path: str | Path, out_dir: str | Path, prefix: str = "", overwrite: bool = False
) -> list[Path]:
    """Write each page of a multi-page TIFF as ``OUT/<prefix><page>.png`` (8/16-bit kept).

    Page numbers are zero-padded to the same width (``00`` .. ``29``), so an image stack and
    its label stack written into ``images/`` and ``masks/`` get matching ids. Existing slices
    are replaced only with ``overwrite`` (checked for all pages before writing any).
    """
    from unetlab.fs.atomic import refuse_existing, write_file
    from unetlab.fs.names import safe_component

    tiff_path, out_dir = Path(tiff_path), Path(out_dir)
    image = open_image(tiff_path, what="TIFF stack", pages=True)
    try:
        count = getattr(image, "n_frames", 1)
        digits = max(2, len(str(count - 1)))
        if prefix:
            safe_component(prefix, "prefix")
        names = [out_dir / f"{prefix}{index:0{digits}d}.png" for index in range(count)]
        refuse_existing(names, overwrite, [tiff_path])
        written = []
        for index, page in enumerate(ImageSequence.Iterator(image)):
            try:
                frame = _storable(page.copy(), tiff_path, index)
            except OSError as exc:
                raise DataFileError(
                    UNREADABLE,
                    f"page {index} of {count} cannot be decoded ({exc})",
                    tiff_path,
                    "the file may be truncated; re-export the stack",
                ) from None
            target = names[index]
            write_file(target, partial(frame.save, format="PNG"), overwrite=overwrite)
            written.append(target)
        return written
    finally:
        image.close()


def _storable(page: Image.Image, path: Path, index: int) -> Image.Image:
    """A page in a mode PNG keeps losslessly: L, P, RGB(A), or 16-bit grayscale."""
    if page.mode in ("L", "P", "RGB", "RGBA", "LA") or page.mode.startswith("I;16"):
        return page if not page.mode.startswith("I;16") else _to_uint16(np.asarray(page))
    if page.mode == "1":
        return page.convert("L")
    if page.mode == "I":
        array = np.asarray(page)
        if array.min() >= 0 and array.max() <= 65535:
            return _to_uint16(array)
    raise DataFileError(
        UNREADABLE,
        f"page {index} has pixel type {page.mode}, which PNG cannot store losslessly",
        path,
        "convert the stack to 8- or 16-bit integers first (e.g. in Fiji: Image > Type)",
    )


def _to_uint16(array: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(array, dtype=np.uint16))
