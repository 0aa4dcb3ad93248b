"""Where a dataset keeps its files: the plain layout and the PASCAL VOC layout.

Plain layout (what ``unetlab data synth``, ``labelme`` and ``split`` write)::

    ROOT/images/<id>.<ext>     ROOT/masks/<id>.png     ROOT/splits/{train,val}.txt
    ROOT/classes.txt           (optional: class names, one per line, in index order)

VOC layout (what VOC-style U-Net projects use)::

    ROOT/VOC2007/JPEGImages/<id>.<ext>   ROOT/VOC2007/SegmentationClass/<id>.png
    ROOT/VOC2007/ImageSets/Segmentation/{train,val}.txt

ROOT may also be the ``VOC2007`` folder itself or a ``VOCdevkit`` folder holding it; any image
ending is accepted in ``JPEGImages``. ``classes.txt`` is looked for beside the data and up to two
folders above it. Nothing here decodes pixels: finding a dataset is a directory listing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from unetlab.data.colors import Color, mask_palette, read_class_lines, voc_colormap
from unetlab.data.io import IMAGE_EXTENSIONS, is_image_file
from unetlab.data.splitting import AUTO_TRAIN, AUTO_VAL, automatic_split
from unetlab.errors import UnetlabError
from unetlab.fs.oserrors import os_error, translated
from unetlab.fs.text import read_lines

ALL = "all"
"""Pseudo split: every id that has an image, whether or not split files exist."""

PLAIN, VOC = "plain", "voc"
_VOC_DIRS = ("JPEGImages", "SegmentationClass")


@dataclass
class DatasetInfo:
    """A dataset found on disk: its folders, class names and the ids of each split."""

    root: Path
    """The folder the data lives in: the plain ROOT, or the ``VOC2007``-like folder."""
    layout: str
    image_dir: Path
    mask_dir: Path
    split_dir: Path
    class_names: list[str] | None = None
    classes_file: Path | None = None
    splits: dict[str, list[str]] = field(default_factory=dict)
    images: dict[str, list[Path]] = field(default_factory=dict)
    masks: dict[str, list[Path]] = field(default_factory=dict)

    @property
    def num_classes(self) -> int | None:
        return len(self.class_names) if self.class_names else None

    @cached_property
    def colors(self) -> list[Color]:
        """Class colours: the palette the masks already carry, else the VOC colour map."""
        first = next((paths[0] for paths in self.masks.values() if paths), None)
        palette = mask_palette(first) if first is not None else None
        return palette if palette is not None else voc_colormap()

    @property
    def default_splits(self) -> tuple[str, str]:
        """(train, val) where none is named: the lists on disk, else the automatic split."""
        return ("train", "val") if self.splits else (AUTO_TRAIN, AUTO_VAL)

    @cached_property
    def automatic_splits(self) -> dict[str, list[str]]:
        """``auto-train`` and ``auto-val``: the split of the labelled images a dataset without
        lists is trained on (not files: computed the same way each time)."""
        return automatic_split(sorted(set(self.images) & set(self.masks)), self.root)

    def split_file(self, split: str) -> Path:
        """The list of ``split``: a name in the dataset's split folder, or a path to a ``.txt``."""
        if is_split_path(split):
            return Path(split).expanduser()
        return self.split_dir / f"{split}.txt"

    def load_split(self, split: str) -> bool:
        """Read a split given as a path to a ``.txt`` id list (one kept outside the dataset,
        e.g. a validation set of other sequences for a read-only dataset); True when known."""
        if split in self.splits or split in (ALL, AUTO_TRAIN, AUTO_VAL):
            return True
        path = self.split_file(split)
        if not is_split_path(split) or not path.is_file():
            return False
        self.splits[split] = read_id_list(path)
        return True

    def ids(self, split: str) -> list[str]:
        """Ids of ``split`` (``"all"``: every image; ``auto-train`` / ``auto-val``: the
        automatic split of the labelled images, :func:`~unetlab.data.splitting.automatic_split`;
        a path to a ``.txt``: the ids it lists); a clear error when the split is unknown."""
        if split == ALL:
            return sorted(self.images)
        if split in (AUTO_TRAIN, AUTO_VAL):
            return list(self.automatic_splits[split])
        if is_split_path(split) and not self.load_split(split):
            raise UnetlabError(
                "split file not found", self.split_file(split),
                "a split given as a path is a .txt file of ids, one per line",
            )
        if split in self.splits:
            return list(self.splits[split])
        if not self.splits:
            raise UnetlabError(
                f"no split files, so there is no '{split}' split (looked for "
                f"{self.split_file(split)})",
                self.root,
                f"run 'unetlab data split {self.root}' to write train/val lists (10% val, "
                f"fixed seed), or train on the automatic split: --set data.train_split="
                f"{AUTO_TRAIN} --set data.val_split={AUTO_VAL}",
            )
        raise UnetlabError(
            f"no split '{split}': {self.split_file(split)} does not exist "
            f"(splits found: {', '.join(sorted(self.splits))})",
            self.root,
            "use one of the splits found, or write the missing split file (one id per line)",
        )

    def image_path(self, sample_id: str) -> Path | None:
        paths = self.images.get(sample_id)
        return paths[0] if paths else None

    def mask_path(self, sample_id: str) -> Path | None:
        paths = self.masks.get(sample_id)
        return paths[0] if paths else None


def dataset_info(root: str | Path) -> DatasetInfo:
    """Find the dataset under ``root`` (plain or VOC layout) and list its files and splits."""
    root = Path(root).expanduser()
    if not root.exists():
        raise UnetlabError("dataset folder not found", root, "check the path")
    if not root.is_dir():
        raise UnetlabError(
            "a dataset is a folder, not a file",
            root,
            "pass the folder holding images/ and masks/ (or VOC2007/)",
        )
    if (root / "images").is_dir() or (root / "masks").is_dir():
        return _plain(root)
    voc = _find_voc(root)
    if voc is not None:
        return _voc(voc)
    raise UnetlabError(
        "not a dataset folder: found neither images/ + masks/ (plain layout) nor "
        "VOC2007/JPEGImages + SegmentationClass (VOC layout)",
        root,
        "put images in ROOT/images and masks in ROOT/masks with the same file names (or use "
        "the VOC layout); 'unetlab data synth DIR' writes an example dataset",
    )


def _plain(root: Path) -> DatasetInfo:
    for name in ("images", "masks"):
        if not (root / name).is_dir():
            raise UnetlabError(
                f"the plain layout needs an {name}/ folder beside "
                f"{'masks' if name == 'images' else 'images'}/",
                root,
                f"create {root / name} holding one file per image, with the same names",
            )
    names, classes_file = _class_names([root])
    return DatasetInfo(
        root=root,
        layout=PLAIN,
        image_dir=root / "images",
        mask_dir=root / "masks",
        split_dir=root / "splits",
        class_names=names,
        classes_file=classes_file,
        splits=_read_splits(root / "splits"),
        images=_index(root / "images"),
        masks=_index(root / "masks"),
    )


def _voc(base: Path) -> DatasetInfo:
    missing = [name for name in _VOC_DIRS if not (base / name).is_dir()]
    if missing:
        raise UnetlabError(
            f"VOC layout without {' and '.join(missing)}/",
            base,
            "a VOC dataset has JPEGImages/ (images) and SegmentationClass/ (index PNG masks)",
        )
    names, classes_file = _class_names([base, base.parent, base.parent.parent])
    split_dir = base / "ImageSets" / "Segmentation"
    return DatasetInfo(
        root=base,
        layout=VOC,
        image_dir=base / "JPEGImages",
        mask_dir=base / "SegmentationClass",
        split_dir=split_dir,
        class_names=names,
        classes_file=classes_file,
        splits=_read_splits(split_dir),
        images=_index(base / "JPEGImages"),
        masks=_index(base / "SegmentationClass"),
    )


def _find_voc(root: Path) -> Path | None:
    """The VOC folder at ``root``, or one or two levels below (``VOCdevkit/VOC2007``)."""
    levels = [[root]]
    levels.append(_subdirs(root))
    levels.append([sub for folder in levels[1] for sub in _subdirs(folder)])
    for level in levels:
        found = [folder for folder in level if any((folder / d).is_dir() for d in _VOC_DIRS)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            preferred = [folder for folder in found if folder.name == "VOC2007"]
            if len(preferred) == 1:
                return preferred[0]
            raise UnetlabError(
                f"several VOC datasets here: {', '.join(str(f) for f in found)}",
                root,
                "pass the one to use",
            )
    return None


def _subdirs(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def _index(folder: Path) -> dict[str, list[Path]]:
    """id (file name without ending) -> its image files, in :data:`IMAGE_EXTENSIONS` order."""
    index: dict[str, list[Path]] = {}
    if not folder.is_dir():
        return index
    with translated(folder, "list the folder"), os.scandir(folder) as entries:
        for entry in entries:
            if is_image_file(entry.name) and _is_readable_file(entry):
                path = Path(entry.path)
                index.setdefault(path.stem, []).append(path)
    order = {ext: i for i, ext in enumerate(IMAGE_EXTENSIONS)}
    for paths in index.values():
        paths.sort(key=lambda p: (order[p.suffix.lower()], p.name))
    return dict(sorted(index.items()))


def _is_readable_file(entry: os.DirEntry) -> bool:
    """A file (or a link to one); a link that loops or leads nowhere is an error naming it,
    not an image silently left out."""
    try:
        if entry.is_file():
            return True
        if entry.is_symlink():
            os.stat(entry.path)  # raises ELOOP / ENOENT with the reason
    except OSError as exc:
        raise os_error(exc, entry.path, "read this image file") from None
    return False


def _read_splits(folder: Path) -> dict[str, list[str]]:
    if not folder.is_dir():
        return {}
    return {path.stem: read_id_list(path) for path in sorted(folder.glob("*.txt"))}


def is_split_path(split: str) -> bool:
    """A split named by the path of its id list (``lists/val.txt``) rather than by a name."""
    return split.endswith(".txt")


def read_id_list(path: Path) -> list[str]:
    """Ids listed one per line; blank lines and ``#`` comments skipped, image endings dropped
    (any encoding and line ends :func:`unetlab.fs.text.read_lines` accepts)."""
    ids = []
    for text in read_lines(path, "split file", comments=True):
        if Path(text).suffix.lower() in IMAGE_EXTENSIONS:
            text = Path(text).stem
        ids.append(text)
    return ids


def _class_names(folders: list[Path]) -> tuple[list[str] | None, Path | None]:
    for folder in folders:
        path = folder / "classes.txt"
        if path.is_file():
            # a "NAME R G B" line (the palette of 'unetlab data rgb-to-index') names NAME
            names = [name for _, name, _ in read_class_lines(path)]  # duplicates refused
            return (names or None), path
    return None, None
