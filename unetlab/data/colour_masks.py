"""Colour masks -> index masks: ``unetlab data rgb-to-index MASKS --palette ... --out DIR``.

Many tools and datasets (CamVid's original labels, Cityscapes' colour images, hand-painted
masks) store one RGB colour per class. unetlab trains on class indices, so each colour is looked
up in a palette and written as its index into a palette PNG (indices stored, the same colours
for viewing). A colour that is not in the palette is never guessed (an anti-aliased edge or a
JPEG artefact would silently become some class): the mask is refused, naming the colours, how
many pixels have them and where the first one is.

Palettes: ``voc`` (the PASCAL VOC colour map: index i has VOC's colour i, 255 its cream border
colour), a palette PNG (its 256 entries, e.g. one of VOC's ``SegmentationClass`` masks), or a
text file with one class per line in index order, ``NAME R G B`` (commas or a colon also
separate; ``#`` starts a comment): the format unetlab's ``classes.txt`` accepts too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unetlab import IGNORE_INDEX
from unetlab.data.colors import Color, mask_palette, read_class_lines, voc_colormap
from unetlab.data.io import is_image_file, open_image, write_mask
from unetlab.errors import UnetlabError

SHOWN_COLOURS = 4


@dataclass(frozen=True)
class Palette:
    """Class index -> colour, and the class names when the palette came with them."""

    colors: dict[int, Color]
    names: list[str] | None = None
    source: str = ""

    def lookup(self) -> dict[int, int]:
        """Packed ``0xRRGGBB`` -> class index."""
        return {(r << 16) | (g << 8) | b: index for index, (r, g, b) in self.colors.items()}

    def listing(self) -> list[Color]:
        """Colours by index for writing the output's palette (gaps filled by VOC's)."""
        base = voc_colormap()
        return [self.colors.get(index, base[index]) for index in range(256)]


def read_palette(spec: str | Path, ignore_color: Color | None = None) -> Palette:
    """``voc``, a palette PNG or a ``NAME R G B`` text file (module docstring); with
    ``ignore_color`` that colour maps to 255 (ignored by training and evaluation)."""
    text = str(spec)
    if text.lower() == "voc":
        colors = dict(enumerate(voc_colormap()))
        palette = Palette(colors, None, "the VOC colour map")
    else:
        path = Path(text).expanduser()
        if not path.is_file():
            raise UnetlabError(
                "palette not found", path, "pass 'voc', a palette PNG or a classes.txt with colours"
            )
        if is_image_file(path):
            listed = mask_palette(path)
            if listed is None:
                raise UnetlabError(
                    "this image has no palette (it is not a palette-mode PNG)",
                    path,
                    "pass a palette PNG, 'voc', or a text file of NAME R G B lines",
                )
            palette = Palette(dict(enumerate(listed)), None, str(path))
        else:
            palette = _palette_from_text(path)
    if ignore_color is not None:
        colors = {i: c for i, c in palette.colors.items() if c != tuple(ignore_color)}
        colors[IGNORE_INDEX] = tuple(ignore_color)  # type: ignore[assignment]
        palette = Palette(colors, palette.names, palette.source)
    return palette


def _palette_from_text(path: Path) -> Palette:
    colors: dict[int, Color] = {}
    names: list[str] = []
    seen: dict[Color, int] = {}
    for number, name, color in read_class_lines(path):
        if color is None:
            raise UnetlabError(
                f"line {number} ({name!r}) is not NAME R G B",
                path,
                "write one class per line in index order, e.g. 'sky 128 128 128'",
            )
        if max(color) > 255:
            raise UnetlabError(f"line {number}: colour values must be 0..255, got {color}", path)
        if color in seen:
            raise UnetlabError(
                f"line {number}: colour {color} is already class {seen[color]} "
                f"({names[seen[color]]})",
                path,
                "give every class its own colour",
            )
        seen[color] = len(names)
        colors[len(names)] = color
        names.append(name)
    if not names:
        raise UnetlabError("the palette file lists no classes", path, "write NAME R G B lines")
    return Palette(colors, names, str(path))


def colour_to_index(rgb: np.ndarray, palette: Palette) -> tuple[np.ndarray, list[str]]:
    """``H x W x 3`` colours -> (``H x W`` uint8 indices, problems). Each problem names a
    colour that is not in the palette, its pixel count and its first pixel (x, y); with
    problems the indices are not meaningful."""
    packed = (
        (rgb[:, :, 0].astype(np.uint32) << 16)
        | (rgb[:, :, 1].astype(np.uint32) << 8)
        | rgb[:, :, 2].astype(np.uint32)
    )
    values, inverse = np.unique(packed, return_inverse=True)
    table = palette.lookup()
    indices = np.array([table.get(int(v), 0) for v in values], dtype=np.uint8)
    unknown = [int(v) for v in values if int(v) not in table]
    problems = []
    for value in unknown[:SHOWN_COLOURS]:
        where = np.flatnonzero(packed == value)
        y, x = divmod(int(where[0]), rgb.shape[1])
        colour = (value >> 16, (value >> 8) & 255, value & 255)
        problems.append(f"{colour} at {len(where)} pixel(s), first at x={x}, y={y}")
    if len(unknown) > SHOWN_COLOURS:
        problems.append(f"... and {len(unknown) - SHOWN_COLOURS} more colour(s)")
    return indices[inverse.reshape(packed.shape)], problems


@dataclass
class ColourMaskReport:
    """What :func:`rgb_to_index` wrote, and the masks it refused with the reason."""

    written: list[Path] = field(default_factory=list)
    refused: dict[Path, str] = field(default_factory=dict)


def rgb_to_index(
    source: str | Path, palette: Palette, out_dir: str | Path, overwrite: bool = False
) -> ColourMaskReport:
    """Convert a colour mask, or every mask image in a folder, to ``OUT_DIR/<name>.png`` index
    masks. Masks with a colour outside the palette are not written; all are converted first
    and the refusals raised together at the end (the masks that were fine are written).

    Raises:
        UnetlabError: the source is missing, the output folder is the source folder (the
            colour masks are never overwritten), two masks share a name (``a.png`` and
            ``a.bmp`` would both become ``a.png``), an output exists already and ``overwrite``
            is not set, or masks were refused (listing them).
    """
    from unetlab.fs.atomic import refuse_existing

    source, out_dir = Path(source), Path(out_dir)
    if source.is_dir():
        paths = sorted(p for p in source.iterdir() if p.is_file() and is_image_file(p))
        folder = source
    elif source.is_file():
        paths, folder = [source], source.parent
    else:
        raise UnetlabError("mask file or folder not found", source, "check the path")
    if not paths:
        raise UnetlabError("no mask images in this folder", source, "check the path")
    if out_dir.resolve() == folder.resolve():
        raise UnetlabError(
            "the output folder is the folder of the colour masks",
            out_dir,
            "write the index masks to another folder (e.g. --out DATASET/masks)",
        )
    targets = {path: out_dir / f"{path.stem}.png" for path in paths}
    shared = [p for p in paths if [q.stem for q in paths].count(p.stem) > 1]
    if shared:
        raise UnetlabError(
            f"{', '.join(p.name for p in shared[:4])} share a name, and each would become "
            f"{shared[0].stem}.png: one mask per image id",
            source,
            "rename or remove the extra copies",
        )
    refuse_existing(targets.values(), overwrite, paths)  # before any work
    report = ColourMaskReport()
    colours = palette.listing()
    for path in paths:
        with open_image(path, what="mask") as image:
            rgb = np.asarray(image.convert("RGB"))
        labels, problems = colour_to_index(rgb, palette)
        if problems:
            report.refused[path] = "colour(s) not in the palette: " + "; ".join(problems)
            continue
        report.written.append(write_mask(targets[path], labels, colours, overwrite))
    if report.refused:
        listed = list(report.refused.items())
        details = " | ".join(f"{p.name}: {why}" for p, why in listed[:10])
        more = f" | ... and {len(listed) - 10} more" if len(listed) > 10 else ""
        raise UnetlabError(
            f"{len(listed)} of {len(paths)} mask(s) refused, {len(report.written)} written to "
            f"{out_dir}: {details}{more}",
            source,
            f"add the missing colours to the palette ({palette.source}), map a void colour "
            "with --ignore-color R,G,B, or repaint those pixels; JPEG masks cannot be "
            "converted exactly (export them as PNG)",
        )
    return report
