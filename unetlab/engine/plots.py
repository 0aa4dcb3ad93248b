"""Pictures of a run: training curves, the confusion matrix, image | truth | prediction panels.

Everything here writes files and never opens a window: matplotlib runs on its ``Agg`` backend,
so plots work on servers, in CI and under ``ssh`` without a display. Panels are composed with
PIL pixel for pixel (no resampling), so a thin membrane in the prediction stays visible.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: plots must never need a display

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator
from PIL import Image, ImageDraw, ImageFont

from unetlab import IGNORE_INDEX

IGNORE_COLOR = (255, 255, 255)
"""Colour of ignored (255) truth pixels in panels: white, never a class colour."""

PANEL_MARGIN = 8
PANEL_TITLES = ("image", "truth", "prediction")
_FONT_SIZE = 12
_SWATCH = 12
_MAX_ANNOTATED_CLASSES = 20  # beyond this, numbers in the confusion matrix are unreadable


# ---------------------------------------------------------------- training curves


def read_metrics_csv(metrics_csv: str | Path) -> dict[str, dict[int, float]]:
    """Column -> {epoch: value} for every numeric cell; empty cells and bad rows are skipped.

    A run that stopped early, validated only every N epochs, or was resumed (the same epoch
    twice: the later row wins) still gives usable curves.
    """
    path = Path(metrics_csv)
    if not path.is_file():
        return {}
    columns: dict[str, dict[int, float]] = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            epoch = _number(row.get("epoch"))
            if epoch is None:
                continue
            for name, text in row.items():
                value = _number(text)
                if name and name != "epoch" and value is not None:
                    columns.setdefault(name, {})[int(epoch)] = value
    return columns


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text not in (None, "") else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


# (file name, y label, columns drawn, log scale)
_CURVES: tuple[tuple[str, str, tuple[str, ...], bool], ...] = (
    ("loss.png", "loss", ("train_loss", "val_loss"), False),
    ("miou.png", "val mIoU", ("miou",), False),
    ("lr.png", "learning rate", ("lr",), True),
)


def plot_curves(metrics_csv: str | Path, out_dir: str | Path) -> list[Path]:
    """Draw ``loss.png`` (train and val loss), ``miou.png`` and ``lr.png`` per epoch.

    A figure is written only when its columns hold at least one value, so a missing, empty or
    header-only CSV gives an empty list instead of an error (the end of a failed run must not
    fail again while plotting). Returns the paths written.
    """
    columns = read_metrics_csv(metrics_csv)
    out_dir = Path(out_dir)
    written: list[Path] = []
    for file_name, ylabel, names, log_scale in _CURVES:
        series = {name: columns[name] for name in names if columns.get(name)}
        if not series:
            continue
        out_dir.mkdir(parents=True, exist_ok=True)
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        try:
            for name, values in series.items():
                epochs = sorted(values)
                ax.plot(epochs, [values[e] for e in epochs], marker="o", markersize=3, label=name)
            if log_scale and all(v > 0 for values in series.values() for v in values.values()):
                ax.set_yscale("log")
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel(ylabel)
            ax.grid(True, alpha=0.3)
            ax.legend()
            fig.tight_layout()
            fig.savefig(out_dir / file_name)
        finally:
            plt.close(fig)
        written.append(out_dir / file_name)
    return written


# ---------------------------------------------------------------- confusion matrix


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """Each row (a true class) divided by its total: the share of that class predicted as each.

    Rows of classes absent from the truth stay all zero instead of becoming NaN.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)


def plot_confusion(
    matrix: np.ndarray, class_names: Sequence[str], path: str | Path, normalize: bool = True
) -> Path:
    """Save a confusion matrix (rows = truth, columns = prediction) as a PNG.

    With ``normalize`` the cells are row shares in percent (the diagonal is each class's recall)
    and the colour scale is 0..1 for every class; otherwise raw pixel counts. Cells are annotated
    up to 20 classes.
    """
    counts = np.asarray(matrix, dtype=np.float64)
    k = counts.shape[0]
    values = normalize_rows(counts) if normalize else counts
    side = max(4.0, 0.55 * k + 2.5)
    fig, ax = plt.subplots(figsize=(side + 1.0, side), dpi=100)
    try:
        image = ax.imshow(
            values, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None, interpolation="nearest"
        )
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        ax.set_xticks(range(k), labels=list(class_names), rotation=45, ha="right")
        ax.set_yticks(range(k), labels=list(class_names))
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title("confusion matrix (% of each true class)" if normalize else "confusion matrix")
        if k <= _MAX_ANNOTATED_CLASSES:
            high = values.max() if values.size else 0.0
            for i in range(k):
                for j in range(k):
                    text = f"{100 * values[i, j]:.1f}" if normalize else f"{int(values[i, j])}"
                    dark = values[i, j] > 0.5 * (1.0 if normalize else high)
                    color = "white" if dark else "black"
                    ax.text(j, i, text, ha="center", va="center", fontsize=8, color=color)
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


# ---------------------------------------------------------------- panels


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """HxW or HxWxC image (uint8, uint16 or float in [0, 1]) -> HxWx3 uint8 for display."""
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 3:
        array = array[:, :, :3]
    if array.dtype == np.uint16:
        array = (array.astype(np.float64) / 65535.0 * 255.0).round()
    elif array.dtype != np.uint8:
        array = np.clip(np.nan_to_num(array.astype(np.float64)), 0.0, 1.0) * 255.0
        array = array.round()
    array = array.astype(np.uint8)
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    return array


def colorize_labels(labels: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """HxW class indices -> HxWx3 colours; ignored (255) pixels white, unknown classes black."""
    from unetlab.inference.overlay import colorize

    labels = np.asarray(labels)
    known = labels < len(palette)
    rgb = np.asarray(colorize(np.where(known, labels, 0).astype(np.uint8), palette), np.uint8)
    rgb = rgb.copy()
    rgb[~known] = 0
    rgb[labels == IGNORE_INDEX] = IGNORE_COLOR
    return rgb


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=_FONT_SIZE)


def _text_width(draw: ImageDraw.ImageDraw, text: str, font) -> int:
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    return math.ceil(right - left)


def panel_origin() -> tuple[int, int]:
    """(x, y) of the top-left corner of the first picture in a panel; picture ``i`` starts at
    ``x + i * (W + PANEL_MARGIN)``. Exposed so callers and tests can find the pictures."""
    return PANEL_MARGIN, 2 * PANEL_MARGIN + _FONT_SIZE + 2


def save_panel(
    image: np.ndarray,
    truth: np.ndarray,
    prediction: np.ndarray,
    palette: Sequence[Sequence[int]],
    path: str | Path,
    class_names: Sequence[str] | None = None,
) -> Path:
    """Save ``image | truth | prediction`` side by side with titles and a class legend below.

    The three pictures keep their pixels (width ``3 * W + 4 * PANEL_MARGIN``, wider only when the
    legend needs it); masks are coloured with ``palette``, ignored truth pixels are white.
    """
    truth, prediction = np.asarray(truth), np.asarray(prediction)
    pictures = [
        to_rgb8(image),
        colorize_labels(truth, palette),
        colorize_labels(prediction, palette),
    ]
    h, w = pictures[0].shape[:2]
    if truth.shape != (h, w) or prediction.shape != (h, w):
        raise ValueError(
            f"panel parts differ in size: image {h}x{w}, truth {truth.shape}, "
            f"prediction {prediction.shape}"
        )
    font = _font()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(palette))]
    entries = [(tuple(int(c) for c in palette[i]), names[i]) for i in range(len(names))]
    if (truth == IGNORE_INDEX).any():
        entries.append((IGNORE_COLOR, "ignored"))
    entry_widths = [
        _SWATCH + 4 + _text_width(measure, name, font) + 2 * PANEL_MARGIN for _, name in entries
    ]

    x0, y0 = panel_origin()
    width = max(3 * w + 4 * PANEL_MARGIN, max(entry_widths, default=0) + 2 * PANEL_MARGIN)
    rows = _wrap(entry_widths, width - 2 * PANEL_MARGIN)
    row_height = _SWATCH + 6
    height = y0 + h + PANEL_MARGIN + len(rows) * row_height + PANEL_MARGIN

    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, (title, picture) in enumerate(zip(PANEL_TITLES, pictures, strict=True)):
        x = x0 + i * (w + PANEL_MARGIN)
        draw.text((x, PANEL_MARGIN), title, fill=(0, 0, 0), font=font)
        canvas.paste(Image.fromarray(picture), (x, y0))
    y = y0 + h + PANEL_MARGIN
    for row in rows:
        x = PANEL_MARGIN
        for index in row:
            color, name = entries[index]
            draw.rectangle([x, y, x + _SWATCH - 1, y + _SWATCH - 1], fill=color, outline=(0, 0, 0))
            draw.text((x + _SWATCH + 4, y - 1), name, fill=(0, 0, 0), font=font)
            x += entry_widths[index]
        y += row_height
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


def _wrap(widths: list[int], available: int) -> list[list[int]]:
    """Greedy line breaking of legend entries (indices) into rows no wider than ``available``."""
    rows: list[list[int]] = [[]]
    used = 0
    for index, width in enumerate(widths):
        if rows[-1] and used + width > available:
            rows.append([])
            used = 0
        rows[-1].append(index)
        used += width
    return [row for row in rows if row]
