"""labelme JSON annotations -> index masks (palette PNG), and a ready plain-layout dataset.

Shapes are filled with Pillow's ``ImageDraw`` exactly as labelme itself rasterises them
(polygon: ``polygon`` with outline; rectangle: ``rectangle``; circle: an ``ellipse`` around the
centre through the second point), in file order, so a later shape covers an earlier one and
the masks equal what labelme's own export gives. Pixels under no shape are class 0, so the
first class name is the background (labelme's ``_background_``); a class list whose first name
is used as a shape label is refused. Shapes without an area (``line``, ``point``,
``linestrip``) are skipped with a note, not fatal. Coordinates must be pairs of finite numbers.

labelme shows (and so annotates) a JPEG rotated by its EXIF orientation; the image written
beside the masks is the rotated one (a PNG), so image and mask line up as drawn.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageOps, UnidentifiedImageError

from unetlab.data.io import write_mask
from unetlab.errors import UnetlabError


def labelme_to_masks(
    json_paths: str | Path | Iterable[str | Path],
    class_names: Sequence[str],
    out_dir: str | Path,
    image_dir: str | Path | None = None,
    overwrite: bool = False,
    notes: list[str] | None = None,
) -> list[Path]:
    """Convert labelme files (a list, or a folder of ``*.json``) to ``OUT/<stem>.png`` masks.

    With ``image_dir``, each annotated image is written there too: the embedded ``imageData``
    (decoded from base64) or the file ``imagePath`` refers to, relative to the JSON file.
    Files whose stems collide get distinct names (``a``, ``a_2``); ``notes`` (if given)
    receives what the user should know: renamed outputs, skipped shapes.
    """
    from unetlab.fs.names import unique_names
    from unetlab.fs.text import check_unique_class_names

    notes = [] if notes is None else notes
    names = [str(name).strip() for name in class_names]
    if len(names) < 2 or any(not name for name in names):
        raise UnetlabError(
            f"need at least two class names, background first; got {names}",
            hint="e.g. --classes _background_,cat,dog",
        )
    check_unique_class_names(names, "--classes")
    paths = _json_files(json_paths)
    documents = [(path, _load(path)) for path in paths]
    _check_background(documents, names)
    written = []
    for (path, document), stem in zip(documents, unique_names([p.stem for p in paths]),
                                      strict=True):
        if stem != path.stem:
            notes.append(f"{path}: another file has the name '{path.stem}', written as '{stem}'")
        mask = _rasterise(document, path, names, notes)
        written.append(write_mask(Path(out_dir) / f"{stem}.png", mask, overwrite=overwrite))
        if image_dir is not None:
            _export_image(document, path, Path(image_dir), stem, mask.shape, overwrite)
    return written


def labelme_to_dataset(
    json_paths: str | Path | Iterable[str | Path],
    class_names: Sequence[str],
    out_root: str | Path,
    overwrite: bool = False,
    notes: list[str] | None = None,
) -> list[Path]:
    """``OUT/images``, ``OUT/masks`` and ``OUT/classes.txt``: a plain-layout dataset."""
    from unetlab.fs.atomic import write_text

    out_root = Path(out_root)
    written = labelme_to_masks(
        json_paths, class_names, out_root / "masks", out_root / "images", overwrite, notes
    )
    names = "".join(f"{n.strip()}\n" for n in class_names)
    write_text(out_root / "classes.txt", names, overwrite=overwrite)
    return written


def class_names_from(value: str) -> list[str]:
    """``--classes``: comma-separated names, or a classes file (one name per line, as a
    dataset's ``classes.txt``)."""
    from unetlab.data.colors import read_class_lines

    path = Path(value)
    if path.is_file() or (value.lower().endswith(".txt") and "," not in value):
        if not path.is_file():
            raise UnetlabError("class list file not found", path, "check the path")
        return [name for _, name, _ in read_class_lines(path)]
    return [name.strip() for name in value.split(",") if name.strip()]


def _check_background(documents: list[tuple[Path, dict[str, Any]]], names: list[str]) -> None:
    """Class 0 is every pixel under no shape; a shape labelled with it means the background
    was forgotten in the class list."""
    for path, document in documents:
        for number, shape in enumerate(document["shapes"]):
            if isinstance(shape, dict) and str(shape.get("label", "")).strip() == names[0]:
                raise UnetlabError(
                    f"shape {number} is labelled '{names[0]}', the first class, but the first "
                    "class is the background (every pixel under no shape): those pixels would "
                    f"all become '{names[0]}'",
                    path,
                    f"put the background first: --classes _background_,{','.join(names)}",
                )


def _json_files(json_paths: str | Path | Iterable[str | Path]) -> list[Path]:
    if isinstance(json_paths, (str, Path)):
        path = Path(json_paths)
        if path.is_dir():
            found = sorted(path.glob("*.json"))
            if not found:
                raise UnetlabError("no labelme .json files in this folder", path)
            return found
        json_paths = [path]
    paths = [Path(p) for p in json_paths]
    for path in paths:
        if not path.is_file():
            raise UnetlabError("labelme file not found", path, "check the path")
    return paths


def _load(path: Path) -> dict[str, Any]:
    from unetlab.fs.text import read_json

    document = read_json(path, "labelme JSON file")
    if not isinstance(document, dict) or not isinstance(document.get("shapes"), list):
        raise UnetlabError(
            "not a labelme annotation (no 'shapes' list)",
            path,
            "pass the .json files labelme saved",
        )
    return document


def _image_size(document: dict[str, Any], path: Path) -> tuple[int, int]:
    """(height, width) from the JSON fields, else from the embedded or referenced image as
    labelme shows it (EXIF orientation applied)."""
    height, width = document.get("imageHeight"), document.get("imageWidth")
    if isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0:
        return height, width
    with Image.open(io.BytesIO(_image_bytes(document, path))) as image:
        shown = ImageOps.exif_transpose(image)
        return shown.height, shown.width


def _image_bytes(document: dict[str, Any], path: Path) -> bytes:
    data = document.get("imageData")
    if data:
        try:
            return base64.b64decode(data, validate=False)
        except (binascii.Error, ValueError) as exc:
            raise UnetlabError(f"imageData is not valid base64 ({exc})", path) from None
    source = _referenced_image(document, path)
    return source.read_bytes()


def _referenced_image(document: dict[str, Any], path: Path) -> Path:
    reference = document.get("imagePath")
    if not reference:
        raise UnetlabError(
            "neither imageData nor imagePath: the image and its size are unknown",
            path,
            "save the annotation again in labelme (it writes both)",
        )
    source = (path.parent / str(reference).replace("\\", "/")).resolve()
    if not source.is_file():
        raise UnetlabError(
            f"the image it refers to ({reference}) is not at {source}",
            path,
            "keep the image beside the JSON file as labelme saved it",
        )
    return source


def _rasterise(
    document: dict[str, Any], path: Path, names: list[str], notes: list[str]
) -> np.ndarray:
    height, width = _image_size(document, path)
    label = Image.new("L", (width, height), 0)
    for number, shape in enumerate(document["shapes"]):
        if not isinstance(shape, dict):
            raise UnetlabError(f"shape {number} is not an object", path, "re-save it in labelme")
        name = str(shape.get("label", "")).strip()
        if name not in names:
            raise UnetlabError(
                f"shape {number} has label '{name}', which is not a class ({', '.join(names)})",
                path,
                "add it to the class list (the index is its position) or fix the label",
            )
        kind = shape.get("shape_type") or "polygon"
        if kind in AREALESS:
            notes.append(f"{path}: shape {number} ('{name}') is a {kind}, which has no area to "
                         "fill: skipped")
            continue
        region = Image.new("1", (width, height), 0)
        _draw(ImageDraw.Draw(region), shape, number, path)
        label.paste(names.index(name), mask=region)
    return np.asarray(label, dtype=np.uint8)


AREALESS = ("line", "linestrip", "point", "points")


def _points(shape: dict[str, Any], number: int, path: Path) -> list[tuple[float, float]]:
    """The shape's points as (x, y) pairs of finite numbers, or a clear error."""
    raw = shape.get("points")
    if not isinstance(raw, list):
        raise UnetlabError(
            f"shape {number} ('{shape.get('label')}') has no list of points ({raw!r})",
            path,
            "redraw the shape in labelme",
        )
    points = []
    for point in raw:
        if (
            not isinstance(point, list | tuple)
            or len(point) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in point)
            or not all(math.isfinite(v) for v in point)
        ):
            raise UnetlabError(
                f"shape {number} ('{shape.get('label')}') has the point {point!r}; a point is "
                "[x, y] with two finite numbers",
                path,
                "fix or redraw the shape in labelme",
            )
        points.append((float(point[0]), float(point[1])))
    return points


def _draw(draw: ImageDraw.ImageDraw, shape: dict[str, Any], number: int, path: Path) -> None:
    kind = shape.get("shape_type") or "polygon"
    points = _points(shape, number, path)
    needed = {"polygon": 3, "rectangle": 2, "circle": 2}
    if kind not in needed:
        raise UnetlabError(
            f"shape {number} ('{shape.get('label')}') is a {kind}, which has no area to fill",
            path,
            "redraw it as a polygon, rectangle or circle, or delete it",
        )
    if len(points) < needed[kind] or (kind != "polygon" and len(points) != needed[kind]):
        raise UnetlabError(
            f"shape {number} ('{shape.get('label')}', {kind}) has {len(points)} points",
            path,
            "redraw the shape in labelme",
        )
    if kind == "polygon":
        draw.polygon(points, outline=1, fill=1)
    elif kind == "rectangle":
        (x0, y0), (x1, y1) = points
        draw.rectangle([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], outline=1, fill=1)
    else:
        (cx, cy), (px, py) = points
        radius = math.hypot(cx - px, cy - py)
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], outline=1, fill=1)


def _export_image(
    document: dict[str, Any],
    path: Path,
    image_dir: Path,
    stem: str,
    mask_shape: tuple[int, ...],
    overwrite: bool,
) -> Path:
    """The annotated image as labelme showed it: the file's bytes as they are, or, when EXIF
    rotates it, the rotated pixels as a PNG (unetlab reads pixels as stored)."""
    from unetlab.fs.atomic import write_bytes, write_file

    data = _image_bytes(document, path)
    try:
        with Image.open(io.BytesIO(data)) as image:
            ending = {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp", "TIFF": ".tif"}.get(
                image.format or "", ".png"
            )
            rotated = image.getexif().get(ORIENTATION, 1) not in (1, None)
            shown = ImageOps.exif_transpose(image) if rotated else image
            size = (shown.height, shown.width)
            if rotated:
                shown.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise UnetlabError(f"the annotated image cannot be read ({exc})", path) from None
    if size != tuple(mask_shape):
        raise UnetlabError(
            f"the image is {size[1]}x{size[0]} but the annotation is for "
            f"{mask_shape[1]}x{mask_shape[0]} (imageWidth x imageHeight)",
            path,
            "open and save the file again in labelme, or fix imageWidth/imageHeight",
        )
    if not document.get("imageData") and not rotated:
        ending = _referenced_image(document, path).suffix.lower()
    if rotated:
        target = image_dir / f"{stem}.png"
        return write_file(target, lambda h: shown.save(h, format="PNG"), overwrite=overwrite)
    return write_bytes(image_dir / f"{stem}{ending}", data, overwrite=overwrite)


ORIENTATION = 0x0112  # the EXIF tag
