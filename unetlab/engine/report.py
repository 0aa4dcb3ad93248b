"""The evaluation report: the numbers of one evaluation, ``report.json``, ``per_image.csv`` and
the printed summary."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np


@dataclass
class EvaluationReport:
    """The numbers of one evaluation and the files written; :meth:`to_dict` is report.json."""

    checkpoint: str
    data_root: str
    split: str
    num_images: int
    class_names: list[str]
    scores: dict[str, Any]  # ConfusionMatrix.compute()
    confusion: np.ndarray
    region_scores: dict[str, Any] | None
    threshold: float | None
    tta: bool | str
    out_dir: Path
    table: str = ""
    notes: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)  # backend, device, layout, precision
    per_image: list[dict[str, Any]] = field(default_factory=list)  # image_row()s, worst first
    postprocessing: dict[str, Any] | None = None  # PostProcessing.to_dict() of the labels scored

    MEANS: ClassVar[tuple[str, ...]] = (
        "miou", "mpa", "mean_precision", "mean_dice", "pixel_accuracy", "fwiou",
    )
    PER_CLASS: ClassVar[tuple[str, ...]] = ("iou", "recall", "precision", "dice")

    def per_class(self) -> list[dict[str, Any]]:
        """One row per class: index, name, truth pixels and the four scores (NaN: undefined)."""
        return [
            {
                "index": index,
                "name": name,
                "pixels": int(self.scores["support"][index]),
                **{key: self.scores[key][index] for key in self.PER_CLASS},
            }
            for index, name in enumerate(self.class_names)
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: undefined scores (NaN) become null."""
        return json_ready(
            {
                "checkpoint": self.checkpoint,
                "data_root": self.data_root,
                "split": self.split,
                "num_images": self.num_images,
                "class_names": self.class_names,
                "threshold": self.threshold,
                "tta": self.tta,
                "model": self.model,
                "postprocessing": self.postprocessing,
                **{key: self.scores[key] for key in self.MEANS},
                "per_class": self.per_class(),
                "binary": self.region_scores,
                "confusion_matrix": self.confusion.tolist(),
                "per_image": self.per_image,
                "notes": self.notes,
                "files": {name: str(path) for name, path in self.files.items()},
            }
        )

    def summary(self) -> str:
        """The per-class table, the means, the EM scores, notes and where the files are."""
        s = self.scores
        lines = [self.table] if self.table else []
        lines.append(
            f"{self.split}: {self.num_images} images | mIoU {_pct(s['miou'])} | pixel accuracy "
            f"{_pct(s['pixel_accuracy'])} | mPA {_pct(s['mpa'])} | mean Dice {_pct(s['mean_dice'])}"
        )
        if self.region_scores:
            r = self.region_scores
            lines.append(
                f"pixel error {_num(r['pixel_error'])} | adapted Rand error "
                f"{_num(r['adapted_rand_error'])} (regions: connected components outside class "
                f"'{r['boundary_class_name']}'; per image, averaged)"
            )
        if self.postprocessing:
            from unetlab.inference.postprocessing import PostProcessing

            described = PostProcessing.from_dict(self.postprocessing).describe(self.class_names)
            if described != "none":
                lines.append(f"post-processing: {described}")
        worst = [row for row in self.per_image[:WORST_SHOWN] if math.isfinite(row["miou"])]
        if worst:
            shown = ", ".join(f"{row['id']} ({_pct(row['miou'])})" for row in worst)
            lines.append(f"worst images by mIoU: {shown}")
        lines += [f"note: {note}" for note in self.notes]
        lines += [f"{name}: {path}" for name, path in self.files.items()]
        return "\n".join(lines)


WORST_SHOWN = 3
"""Worst images named in the printed summary (all are in report.json and per_image.csv)."""


def per_image_table(rows: Sequence[dict[str, Any]], class_names: Sequence[str]) -> str:
    """``rows`` (:func:`unetlab.metrics.per_image.image_row`, in their order) as CSV text: rank,
    id, size, the whole-image scores, then ``iou <class>`` and ``dice <class>`` per class.
    Undefined scores (NaN) are empty cells; numbers keep full precision."""
    from unetlab.metrics.per_image import ROW_SCORES

    scores = [key for key in ROW_SCORES if rows and key in rows[0]]
    header = ["rank", "id", "width", "height", *scores]
    header += [f"{kind} {name}" for kind in ("iou", "dice") for name in class_names]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for rank, row in enumerate(rows, start=1):
        values = [row[key] for key in scores] + list(row["iou"]) + list(row["dice"])
        writer.writerow(
            [rank, row["id"], row["width"], row["height"], *(_cell(v) for v in values)]
        )
    return buffer.getvalue()


def write_per_image_csv(
    rows: Sequence[dict[str, Any]], class_names: Sequence[str], path: Path
) -> Path:
    """Write :func:`per_image_table` to ``path`` atomically."""
    from unetlab.fs.atomic import write_text

    return write_text(path, per_image_table(rows, class_names))


def _cell(value: float) -> str:
    return "" if value is None or not math.isfinite(value) else repr(float(value))


def _pct(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:.2f}%"


def _num(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4f}"


def json_ready(value: Any) -> Any:
    """Plain JSON values: numpy to Python, NaN and infinities to null."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def evaluation_notes(
    report: EvaluationReport, ignored_pixels: int, dataset_classes: Sequence[str] | None
) -> list[str]:
    """Warnings a reader of the numbers needs: other class names in the dataset, absent
    classes, probably-0/255 masks."""
    notes = []
    if dataset_classes and list(dataset_classes) != report.class_names:
        notes.append(
            f"the dataset's class list ({', '.join(dataset_classes)}) differs from the "
            f"checkpoint's ({', '.join(report.class_names)}); mask values are read as the "
            "checkpoint's classes"
        )
    support = report.scores["support"]
    absent = [n for n, pixels in zip(report.class_names, support, strict=True) if not pixels]
    if absent:
        notes.append(
            f"class(es) {', '.join(absent)} never occur in the truth of this split: their "
            "recall is undefined and their IoU counts only where predicted"
        )
        if ignored_pixels and support[0] and not any(support[1:]):  # 0/255, not all-255
            notes.append(
                f"{ignored_pixels} truth pixels are 255 (ignored); if your masks are 0/255 "
                "binary masks, 255 was meant as a class: convert them ('unetlab data fix-binary')"
            )
    return notes
