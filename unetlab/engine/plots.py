"""Pictures of a run: training curves, the confusion matrix, image | truth | prediction panels.

Everything here writes files and never opens a window: matplotlib runs on its ``Agg`` backend,
so plots work on servers, in CI and under ``ssh`` without a display. Panels are composed with
PIL pixel for pixel (no resampling), so a thin membrane in the prediction stays visible.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: plots must never need a display

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator
from PIL import Image, ImageDraw, ImageFont

from unetlab import IGNORE_INDEX
from unetlab.fs.atomic import write_file

PANEL_MARGIN = 8
PANEL_TITLES = ("image", "truth", "prediction")
_FONT_SIZE = 12
_LEGEND_ROW = 20
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


def save_figure(fig: Any, path: Path) -> Path:
    """``fig.savefig`` through the atomic writer (format from the ending, PNG by default)."""
    fmt = path.suffix.lstrip(".").lower() or "png"
    return write_file(path, lambda handle: fig.savefig(handle, format=fmt))


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
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        try:
            for name, values in series.items():
                epochs = sorted(values)
                ax.plot(epochs, [values[e] for e in epochs], marker="o", markersize=3, label=name)
            if log_scale and all(v > 0 for values in series.values() for v in values.values()):
                ax.set_yscale("log")
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
            ax.set_ylabel(ylabel)
            ax.grid(True, alpha=0.3)
            ax.legend()
            fig.tight_layout()
            save_figure(fig, out_dir / file_name)
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
        path = save_figure(fig, Path(path))
    finally:
        plt.close(fig)
    return path


# ---------------------------------------------------------------- panels


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
    errors: np.ndarray | None = None,
) -> Path:
    """Save ``image | truth | prediction`` side by side with titles and a class legend below;
    with ``errors`` (an ``H x W x 3`` picture from :func:`unetlab.inference.error_map.error_map`)
    a fourth picture, ``errors``, and a key of its colours under the legend.

    The pictures keep their pixels (the panel is ``3 * W + 4 * PANEL_MARGIN`` wide, or
    ``4 * W + 5 * PANEL_MARGIN`` with the error map, wider only when the legend needs it).
    ``palette`` lists the class colours; classes beyond it and the ignored truth pixels (255)
    get the colours ``predict`` gives them (the VOC colour map).
    """
    from unetlab.inference.error_map import ERROR_LEGEND
    from unetlab.inference.overlay import colorize, legend, make_palette, to_display

    truth, prediction = np.asarray(truth), np.asarray(prediction)
    colors = make_palette(palette)
    pictures = [to_display(image), colorize(truth, colors), colorize(prediction, colors)]
    h, w = pictures[0].shape[:2]
    if truth.shape != (h, w) or prediction.shape != (h, w):
        raise ValueError(
            f"panel parts differ in size: image {h}x{w}, truth {truth.shape}, "
            f"prediction {prediction.shape}"
        )
    titles = list(PANEL_TITLES)
    if errors is not None:
        if errors.shape != (h, w, 3):
            raise ValueError(f"the error map is {errors.shape}, the image {h}x{w}")
        pictures.append(np.asarray(errors, np.uint8))
        titles.append("errors")
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(palette))]
    key = legend(names, colors, row_height=_LEGEND_ROW)
    has_ignored = bool((truth == IGNORE_INDEX).any())
    rows: list[list[tuple[str, tuple[int, ...]]]] = []
    if has_ignored:
        rows.append([("ignored (255)", tuple(int(c) for c in colors[IGNORE_INDEX]))])
    if errors is not None:
        kinds = ERROR_LEGEND if has_ignored else ERROR_LEGEND[:-1]
        rows.append([(f"error map: {kinds[0][0]}", kinds[0][1]), *kinds[1:]])

    x0, y0 = panel_origin()
    count = len(pictures)
    width = max(count * w + (count + 1) * PANEL_MARGIN, key.shape[1] + 2 * PANEL_MARGIN)
    legend_top = y0 + h + PANEL_MARGIN
    height = legend_top + key.shape[0] + PANEL_MARGIN + _LEGEND_ROW * len(rows)
    font = ImageFont.load_default(size=_FONT_SIZE)
    width = max(width, *(_swatch_row_width(row, font) for row in rows)) if rows else width
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, (title, picture) in enumerate(zip(titles, pictures, strict=True)):
        x = x0 + i * (w + PANEL_MARGIN)
        draw.text((x, PANEL_MARGIN), title, fill=(0, 0, 0), font=font)
        canvas.paste(Image.fromarray(picture), (x, y0))
    canvas.paste(Image.fromarray(key), (PANEL_MARGIN, legend_top))
    for number, row in enumerate(rows):  # swatches like the legend's, without class indices
        _draw_swatch_row(draw, row, legend_top + key.shape[0] + number * _LEGEND_ROW, font)
    path = Path(path)
    return write_file(path, lambda handle: canvas.save(handle, format="PNG"))


def _swatch_row_width(row: Sequence[tuple[str, Any]], font: Any) -> int:
    return PANEL_MARGIN + sum(
        2 * _LEGEND_ROW + 8 + int(font.getlength(text)) + PANEL_MARGIN for text, _ in row
    )


def _draw_swatch_row(
    draw: ImageDraw.ImageDraw, row: Sequence[tuple[str, Any]], top: int, font: Any
) -> None:
    x = PANEL_MARGIN
    for text, color in row:
        swatch = [x + 4, top + 2, x + 2 * _LEGEND_ROW - 4, top + _LEGEND_ROW - 4]
        draw.rectangle(swatch, fill=tuple(int(c) for c in color), outline=(0, 0, 0))
        text_at = (x + 2 * _LEGEND_ROW + 4, top + _LEGEND_ROW // 2)
        draw.text(text_at, text, fill=(0, 0, 0), font=font, anchor="lm")
        x += 2 * _LEGEND_ROW + 8 + int(font.getlength(text)) + PANEL_MARGIN


def denormalize(image: Any, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Undo ``image_to_tensor``'s normalisation for display: C x H x W -> H x W x C in [0, 1]."""
    import torch

    channels = image.shape[0]
    mean_t = torch.tensor(list(mean)[:channels], dtype=torch.float32).view(-1, 1, 1)
    std_t = torch.tensor(list(std)[:channels], dtype=torch.float32).view(-1, 1, 1)
    restored = image.detach().float().cpu() * std_t + mean_t
    return restored.clamp(0, 1).permute(1, 2, 0).numpy()


def safe_name(sample_id: Any) -> str:
    """A file name for a sample id (ids of nested folders contain '/')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(sample_id)) or "sample"


def file_names(sample_ids: Sequence[Any]) -> list[str]:
    """:func:`safe_name` of each id, made distinct (ids ``a b`` and ``a_b`` -> ``a_b``,
    ``a_b_2``) so no panel replaces another's."""
    from unetlab.fs.names import unique_names

    return unique_names([safe_name(sample_id) for sample_id in sample_ids])
