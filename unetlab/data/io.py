"""Reading images and masks, and writing masks, with every pixel format handled on purpose.

Images come back as ``H x W x C`` arrays (``C`` = 1 or 3), ``uint8`` or ``uint16`` as stored:

- grayscale (``L``, 1-bit, 16-bit) -> ``H x W x 1``; 16-bit stays ``uint16`` (also 16-bit RGB,
  which Pillow would silently cut to 8 bits, so those files are decoded with OpenCV);
- RGBA / LA -> the colour channels, alpha dropped (a network input has no use for it);
- palette (``P``) and other colour models (CMYK, YCbCr, ...) -> RGB.

EXIF orientation is NOT applied: a mask is drawn on the pixel grid as stored, and rotating the
image but not its mask would misalign them. ``check_dataset`` points at EXIF when an image and
its mask have swapped width and height.

Masks come back as ``H x W`` ``uint8`` class indices (255 = ignore). A palette PNG is read as its
indices, never as colours; grayscale is read as is; an RGB mask whose channels are all equal is
read as grayscale. Colour (RGB) masks and JPEG masks are refused with the reason: the first
encode classes as colours unetlab cannot guess, the second are lossy and invent classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from unetlab.data.colors import Color, full_palette
from unetlab.data.problems import (
    BAD_MASK,
    JPEG_MASK,
    MISSING,
    RGB_MASK,
    UNREADABLE,
    DataFileError,
)
from unetlab.fs.atomic import write_file

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
"""File endings read as images (lower case); masks are looked up among the same endings."""

LOSSY_EXTENSIONS = (".jpg", ".jpeg")


def is_image_file(path: str | Path) -> bool:
    """True for a visible file whose ending is one of :data:`IMAGE_EXTENSIONS`."""
    path = Path(path)
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def open_image(path: str | Path, what: str = "image", pages: bool = False) -> Image.Image:
    """Open and fully decode one image file, turning every way it can fail into a clear error.

    The pixels are decoded here (``load``) so a truncated file fails now, naming the file,
    instead of deep inside a DataLoader worker. A multi-page TIFF is refused unless ``pages``
    (then the file stays open for reading the other pages; close it when done).
    """
    path = Path(path)
    a_what = f"{'an' if what[0] in 'aeiou' else 'a'} {what}"
    replacement = (
        "a PNG of class indices" if what == "mask" else "a real image file (PNG, JPEG, TIFF, ...)"
    )
    if not path.is_file():
        raise DataFileError(MISSING, f"{what} file not found", path, "check the path and the name")
    if path.stat().st_size == 0:
        raise DataFileError(
            UNREADABLE, f"empty file (0 bytes), not {a_what}", path, "replace or delete the file"
        )
    try:
        image = Image.open(path)
        frames = getattr(image, "n_frames", 1)
        if pages:
            image.load()
        else:
            with image:  # leaving the block closes the file; the decoded pixels stay
                image.load()
    except UnidentifiedImageError:
        raise DataFileError(
            UNREADABLE,
            f"not {a_what}: no image format recognised{_looks_like_text(path)}",
            path,
            f"replace it with {replacement} or delete it",
        ) from None
    except Image.DecompressionBombError as exc:
        raise DataFileError(
            UNREADABLE,
            f"{what} too large to open safely ({exc})",
            path,
            "downscale or tile the image before using it",
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataFileError(
            UNREADABLE,
            f"corrupt or truncated {what} ({exc})",
            path,
            "re-export or re-copy the file; it cannot be decoded",
        ) from None
    if frames > 1 and image.format == "TIFF" and not pages:
        raise DataFileError(
            UNREADABLE,
            f"multi-page TIFF with {frames} pages, not a single {what}",
            path,
            f"split it into one file per page with 'unetlab data tiff {path} --out DIR'",
        )
    return image


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as ``H x W x C`` (``C`` 1 or 3), ``uint8`` or ``uint16`` (see module doc)."""
    image = open_image(path)
    if image.mode in ("RGB", "RGBA") and _is_16bit_colour(image):
        return _read_16bit_colour(Path(path))
    mode = image.mode
    if mode == "1":
        image = image.convert("L")
    elif mode in ("P", "PA"):
        image = image.convert("RGBA")  # RGBA keeps a transparent palette entry sane; alpha dropped
    elif mode not in ("L", "LA", "RGB", "RGBA", "RGBX", "I", "F") and not mode.startswith("I;16"):
        image = image.convert("RGB")  # CMYK, YCbCr, LAB, HSV
    array = np.array(image)  # a writable copy
    if array.ndim == 2:
        array = array[:, :, None]
    if array.shape[2] in (2, 4):  # LA, RGBA, RGBX: drop alpha / padding
        array = array[:, :, : array.shape[2] - 1]
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if array.dtype.kind in "ui" and array.min() >= 0 and array.max() <= 65535:
        return np.ascontiguousarray(array.astype(np.uint16))
    raise DataFileError(
        UNREADABLE,
        f"unsupported pixel type ({image.mode}, {array.dtype}): unetlab reads 8- and 16-bit images",
        path,
        "convert it to an 8-bit or 16-bit PNG or TIFF",
    )


def read_mask(path: str | Path) -> np.ndarray:
    """Read a mask as ``H x W`` ``uint8`` class indices (see module doc for what is refused)."""
    path = Path(path)
    if path.suffix.lower() in LOSSY_EXTENSIONS and path.is_file():
        raise _jpeg_mask_error(path)
    image = open_image(path, what="mask")
    if image.format == "JPEG":
        raise _jpeg_mask_error(path)
    if image.mode == "1":
        return np.array(image, dtype=np.uint8)  # 1-bit: set pixels are class 1
    array = np.array(image)
    if array.ndim == 3:
        array = _gray_from_colour(array, path, image.mode)
    if array.dtype != np.uint8:
        if array.dtype.kind not in "ui":
            raise DataFileError(
                BAD_MASK,
                f"mask has pixel type {image.mode} ({array.dtype}); masks hold integer classes",
                path,
                "save the mask as an 8-bit grayscale or palette PNG of class indices",
            )
        top = int(array.max()) if array.size else 0
        if array.min() < 0 or top > 255:
            raise DataFileError(
                BAD_MASK,
                f"{image.mode} mask with values up to {top}; class indices must fit in 0..255",
                path,
                "save the mask as an 8-bit PNG whose values are class indices 0..N-1 "
                "(255 = ignore)",
            )
        array = array.astype(np.uint8)
    return np.ascontiguousarray(array)


def write_mask(
    path: str | Path,
    mask: np.ndarray,
    palette: Sequence[Color] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write an ``H x W`` index mask as a palette PNG (indices stored, colours for viewing).

    ``palette`` lists class colours from index 0; missing entries come from the VOC colour map
    (index 255 included), so masks are visible in any viewer instead of almost black.
    The file is written atomically, with the user's umask, and never over a file this
    invocation did not create unless ``overwrite`` (:mod:`unetlab.fs.atomic`).
    """
    path = Path(path)
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a mask is 2-D (H x W), got shape {mask.shape}")
    if mask.dtype != np.uint8:
        if mask.size and (mask.min() < 0 or mask.max() > 255):
            raise ValueError("mask values must lie in 0..255 to be written as a palette PNG")
        mask = mask.astype(np.uint8)
    if path.suffix.lower() != ".png":
        raise ValueError(f"masks are written as PNG, got {path.name}")
    image = Image.fromarray(mask, mode="P")
    image.putpalette(full_palette(list(palette) if palette is not None else None))
    return write_file(path, lambda handle: image.save(handle, format="PNG"), overwrite=overwrite)


def _gray_from_colour(array: np.ndarray, path: Path, mode: str) -> np.ndarray:
    """A colour mask is accepted only when it is really gray (equal channels, opaque)."""
    channels = 1 if mode in ("LA", "La", "PA") else 3
    colour = array[:, :, :channels]
    alpha = array[:, :, channels] if array.shape[2] > channels else None
    gray = colour[:, :, 0]
    equal = all(np.array_equal(gray, colour[:, :, c]) for c in range(1, channels))
    if equal and (alpha is None or bool((alpha == alpha.flat[0]).all())):
        return gray
    if not equal:
        packed = colour[:, :, 0].astype(np.uint32) << 16
        packed |= colour[:, :, 1].astype(np.uint32) << 8
        packed |= colour[:, :, 2]
        found = np.unique(packed)
        shown = ", ".join(f"({v >> 16},{(v >> 8) & 255},{v & 255})" for v in found[:4])
        more = ", ..." if len(found) > 4 else ""
        raise DataFileError(
            RGB_MASK,
            f"{mode} colour mask ({len(found)} colour(s): {shown}{more}); unetlab needs one class "
            "index per pixel, not a colour",
            path,
            "convert it to an index mask: a palette ('P') or grayscale ('L') PNG whose pixel "
            "values are the class numbers 0..N-1 (255 = ignore)",
        )
    raise DataFileError(
        BAD_MASK,
        f"{mode} mask with a varying alpha channel; unetlab does not read classes from alpha",
        path,
        "save the mask as a grayscale or palette PNG of class indices without transparency",
    )


def _jpeg_mask_error(path: Path) -> DataFileError:
    return DataFileError(
        JPEG_MASK,
        "JPEG mask: JPEG is lossy and changes pixel values along edges, which invents classes "
        "that are not in your labels",
        path,
        "export the masks again as PNG from your annotation tool (converting this JPEG to PNG "
        "would keep the damaged edge values)",
    )


def _looks_like_text(path: Path) -> str:
    head = path.read_bytes()[:256]
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return ""
    return " (the file holds text)"


def _is_16bit_colour(image: Image.Image) -> bool:
    """Pillow decodes 16-bit-per-channel colour PNG/TIFF to 8 bits; detect it from the header."""
    if image.format == "PNG":
        with open(getattr(image, "filename", ""), "rb") as handle:
            header = handle.read(26)
        return len(header) == 26 and header[24] == 16
    if image.format == "TIFF":
        bits = getattr(image, "tag_v2", {}).get(258, (8,))
        return max(bits if isinstance(bits, tuple) else (bits,)) == 16
    return False


def _read_16bit_colour(path: Path) -> np.ndarray:
    import cv2

    array = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None or array.ndim != 3 or array.dtype != np.uint16:
        raise DataFileError(
            UNREADABLE, "16-bit colour image that cannot be decoded", path, "convert it to 8 bits"
        )
    return np.ascontiguousarray(array[:, :, 2::-1])  # BGR(A) -> RGB, alpha dropped
