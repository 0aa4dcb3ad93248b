"""labelme JSON annotations -> index masks (palette PNG), and a ready plain-layout dataset.

Shapes are filled with Pillow's ``ImageDraw`` exactly as labelme itself rasterises them
(polygon: ``polygon`` with outline; rectangle: ``rectangle``; circle: an ``ellipse`` around the
centre through the second point), in file order, so a later shape covers an earlier one and
the masks equal what labelme's own export gives. Pixels under no shape are class 0, so the
first class name is the background (labelme's ``_background_``).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError

from unetlab.data.io import write_mask
from unetlab.errors import UnetlabError


def labelme_to_masks(
    json_paths: str | Path | Iterable[str | Path],
    class_names: Sequence[str],
    out_dir: str | Path,
    image_dir: str | Path | None = None,
) -> list[Path]:
    """Convert labelme files (a list, or a folder of ``*.json``) to ``OUT/<stem>.png`` masks.

    With ``image_dir``, each annotated image is written there too: the embedded ``imageData``
    (decoded from base64) or the file ``imagePath`` refers to, relative to the JSON file.
    """
    paths = _json_files(json_paths)
    names = [str(name).strip() for name in class_names]
    if len(names) < 2 or len(set(names)) != len(names):
        raise UnetlabError(
            f"need at least two distinct class names, background first; got {names}",
            hint="e.g. --classes _background_,cat,dog",
        )
    written = []
    for path in paths:
        document = _load(path)
        mask = _rasterise(document, path, names)
        written.append(write_mask(Path(out_dir) / f"{path.stem}.png", mask))
        if image_dir is not None:
            _export_image(document, path, Path(image_dir))
    return written


def labelme_to_dataset(
    json_paths: str | Path | Iterable[str | Path], class_names: Sequence[str], out_root: str | Path
) -> list[Path]:
    """``OUT/images``, ``OUT/masks`` and ``OUT/classes.txt``: a plain-layout dataset."""
    out_root = Path(out_root)
    written = labelme_to_masks(json_paths, class_names, out_root / "masks", out_root / "images")
    (out_root / "classes.txt").write_text("".join(f"{n.strip()}\n" for n in class_names))
    return written


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
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnetlabError(
            f"not a readable JSON file ({exc})", path, "pass the .json files labelme saved"
        ) from None
    if not isinstance(document, dict) or not isinstance(document.get("shapes"), list):
        raise UnetlabError(
            "not a labelme annotation (no 'shapes' list)",
            path,
            "pass the .json files labelme saved",
        )
    return document


def _image_size(document: dict[str, Any], path: Path) -> tuple[int, int]:
    """(height, width) from the JSON fields, else from the embedded or referenced image."""
    height, width = document.get("imageHeight"), document.get("imageWidth")
    if isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0:
        return height, width
    with Image.open(io.BytesIO(_image_bytes(document, path))) as image:
        return image.height, image.width


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


def _rasterise(document: dict[str, Any], path: Path, names: list[str]) -> np.ndarray:
    height, width = _image_size(document, path)
    label = Image.new("L", (width, height), 0)
    for number, shape in enumerate(document["shapes"]):
        name = str(shape.get("label", "")).strip()
        if name not in names:
            raise UnetlabError(
                f"shape {number} has label '{name}', which is not a class ({', '.join(names)})",
                path,
                "add it to the class list (the index is its position) or fix the label",
            )
        region = Image.new("1", (width, height), 0)
        _draw(ImageDraw.Draw(region), shape, number, path)
        label.paste(names.index(name), mask=region)
    return np.asarray(label, dtype=np.uint8)


def _draw(draw: ImageDraw.ImageDraw, shape: dict[str, Any], number: int, path: Path) -> None:
    kind = shape.get("shape_type") or "polygon"
    points = [tuple(float(v) for v in point) for point in shape.get("points", [])]
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


def _export_image(document: dict[str, Any], path: Path, image_dir: Path) -> Path:
    image_dir.mkdir(parents=True, exist_ok=True)
    if document.get("imageData"):
        data = _image_bytes(document, path)
        try:
            with Image.open(io.BytesIO(data)) as image:
                ending = {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp", "TIFF": ".tif"}.get(
                    image.format or "", ".png"
                )
        except UnidentifiedImageError:
            raise UnetlabError("imageData holds no readable image", path) from None
        target = image_dir / f"{path.stem}{ending}"
        target.write_bytes(data)
        return target
    source = _referenced_image(document, path)
    target = image_dir / f"{path.stem}{source.suffix.lower()}"
    shutil.copyfile(source, target)
    return target
