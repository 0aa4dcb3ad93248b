"""``unetlab evaluate``: score a saved model on a labelled split, through the predictor.

The model is opened with :func:`unetlab.inference.open_model`, the function ``predict`` uses,
and every image is predicted by that predictor from its file (same reading, channel handling,
padding or tiling, TTA, precision and decision rule), so the confusion matrix counts exactly
the labels ``unetlab predict`` would write for these images, for checkpoints and for exports
(fp32 or int8) alike. What is around it lives in one module per concept:
:mod:`~unetlab.engine.measure` (the trainer's validation loop), :mod:`~unetlab.engine.regions`
(pixel and adapted Rand error of binary tasks) and :mod:`~unetlab.engine.report` (report.json
and the printed summary).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from unetlab import IGNORE_INDEX
from unetlab.artifacts.card import ModelCard
from unetlab.data.binary import truth_looks_0_255
from unetlab.engine.measure import Measurement, collect_confusion
from unetlab.engine.regions import BOUNDARY_CLASS_NAMES, RegionScores, resolve_boundary_class
from unetlab.engine.report import (
    EvaluationReport,
    evaluation_notes,
    json_ready,
    write_per_image_csv,
)
from unetlab.errors import UnetlabError
from unetlab.inference.grid import DEFAULT_TILE
from unetlab.inference.open import DEFAULT_PRECISION
from unetlab.metrics.per_image import worst_first
from unetlab.progress import Progress

__all__ = [
    "BOUNDARY_CLASS_NAMES",
    "EvaluationReport",
    "Measurement",
    "RegionScores",
    "SampleRecorder",
    "collect_confusion",
    "default_out_dir",
    "evaluate",
    "resolve_boundary_class",
]


class SampleRecorder:
    """Per image: its row of scores (:func:`unetlab.metrics.per_image.image_row`, the one the
    ``unetlab serve`` inspect page shows), ignored truth pixels, and the ``num_worst`` worst
    images (lowest mIoU) kept in memory for their panels."""

    def __init__(self, card: ModelCard, num_worst: int, region_scores: RegionScores | None):
        self.card = card
        self.num_worst = num_worst
        self.region_scores = region_scores
        self.boundary = region_scores.boundary_class if region_scores is not None else None
        self.rows: list[dict[str, Any]] = []
        self.worst: list[tuple[Any, int, dict[str, Any], np.ndarray, np.ndarray, np.ndarray]] = []
        self.ignored_pixels = 0

    def __call__(
        self, sample_id: str, image: np.ndarray, truth: np.ndarray, prediction: np.ndarray
    ) -> None:
        from unetlab.metrics.per_image import image_row, worst_first_key

        self.ignored_pixels += int((truth == IGNORE_INDEX).sum())
        row = image_row(
            sample_id, prediction, truth, self.card.num_classes, self.boundary, IGNORE_INDEX
        )
        self.rows.append(row)
        if self.region_scores is not None:
            self.region_scores.add(row)
        if self.num_worst:  # ties keep the split's order, as worst_first does
            self.worst.append((worst_first_key(row), len(self.rows), row, image, truth, prediction))
            self.worst.sort(key=lambda item: (item[0], item[1]))
            del self.worst[self.num_worst :]

    def save_panels(self, panel_dir: Path) -> list[Path]:
        """``panel_dir/<rank>_<id>.png`` for the worst images, worst first: image | truth |
        prediction | error map (:func:`unetlab.inference.error_map.error_map`)."""
        from unetlab.engine.plots import safe_name, save_panel
        from unetlab.inference.error_map import error_map

        digits = len(str(len(self.worst)))
        return [
            save_panel(
                image,
                truth,
                prediction,
                self.card.class_colors,
                panel_dir / f"{rank:0{digits}d}_{safe_name(row['id'])}.png",
                self.card.class_names,
                errors=error_map(image, prediction, truth, ignore_index=IGNORE_INDEX),
            )
            for rank, (_, _, row, image, truth, prediction) in enumerate(self.worst, start=1)
        ]


def default_out_dir(checkpoint_path: str | Path, split: str) -> Path:
    """``RUN/evaluation/<split>`` for ``RUN/checkpoints/x.pt``, else beside the checkpoint."""
    path = Path(checkpoint_path)
    run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return run / "evaluation" / split


def evaluate(
    checkpoint_or_run: str | Path,
    data_root: str | Path,
    split: str | None = None,
    out_dir: str | Path | None = None,
    device: str = "auto",
    batch_size: int = 1,
    num_panels: int = 4,
    threshold: float | None = None,
    tta: bool | str | None = None,
    boundary_class: int | str | None = None,
    verbose: bool = False,
    precision: str = DEFAULT_PRECISION,
    tile: int = DEFAULT_TILE,
    overlap: float = 0.25,
    tile_weights: str = "gaussian",
    postprocessing: Any = None,
    save_postprocessing: bool = False,
    threads: int | None = None,
    progress: bool = True,
) -> EvaluationReport:
    """Evaluate a checkpoint, a run folder (its best checkpoint) or an ``.onnx`` export on
    ``data_root``'s ``split`` (default ``val``; ``auto-val`` for a dataset without split lists,
    the images a planned run of it held out).

    Everything about the model comes from its card (architecture, class names and colours,
    normalisation, an export's threshold). Writes ``report.json`` (with every image's scores,
    worst first), ``per_image.csv`` (the same rows), ``confusion_matrix.png`` and
    ``panels/<rank>_<id>.png`` (image | truth | prediction | error map of the ``num_panels``
    images with the lowest mIoU) into ``out_dir`` (default ``RUN/evaluation/<split>``).
    ``device``, ``precision``, ``threshold`` (binary models), ``tta`` (None: the model's own)
    and ``batch_size`` mean what they mean for ``unetlab predict``; ``boundary_class``
    picks the region separator of the Rand error (:mod:`unetlab.engine.regions`).
    ``tile``, ``overlap`` and ``tile_weights`` cut large images as predict does.
    ``postprocessing`` (:class:`~unetlab.inference.postprocessing.PostProcessing` or its dict)
    replaces the one stored with the model; ``save_postprocessing`` stores the one applied in
    ``RUN/postprocessing.json``, so that ``predict``, ``serve`` and ``export`` of the run apply it.
    ``verbose`` prints :meth:`EvaluationReport.summary`; ``threads``: CPU threads
    (:mod:`unetlab.threads`); ``progress``: a bar over the images (:mod:`unetlab.progress`).
    Existing outputs are never replaced unless inside
    :func:`unetlab.fs.atomic.overwriting` (the command's ``--overwrite``).
    """
    from unetlab.data import open_dataset
    from unetlab.data.layouts import dataset_info
    from unetlab.engine.plots import plot_confusion
    from unetlab.fs.atomic import make_folder, refuse_existing, write_text
    from unetlab.inference.open import open_model
    from unetlab.metrics import ConfusionMatrix

    predictor = open_model(
        checkpoint_or_run,
        device,
        precision,
        threshold=threshold,
        tta=tta,
        batch_size=batch_size,
        tile=tile,
        overlap=overlap,
        tile_weights=tile_weights,
        progress=False,  # tile bars: the images' bar below is the one bar
        threads=threads,
        postprocessing=postprocessing,
    )
    card = predictor.card
    assert card is not None
    split = split or dataset_info(data_root).default_splits[1]
    if save_postprocessing and card.format != "checkpoint":
        raise UnetlabError(
            "--save-postprocessing stores post-processing beside a checkpoint; an export "
            "carries the one its checkpoint had when it was exported",
            card.path,
            "evaluate the run folder with --save-postprocessing, then export it again",
        )
    region_scores = (
        RegionScores(resolve_boundary_class(card.class_names, boundary_class), card.class_names)
        if card.num_classes == 2
        else None
    )
    dataset = open_dataset(
        data_root,
        split,
        num_classes=card.num_classes,
        normalization=card.normalization,
        in_channels=card.in_channels,
    )
    out = Path(out_dir) if out_dir is not None else default_out_dir(card.path, split)
    refuse_existing(  # before any work
        [out / "report.json", out / "confusion_matrix.png", out / "per_image.csv"]
    )
    make_folder(out)
    recorder = SampleRecorder(card, num_panels, region_scores)
    matrix = ConfusionMatrix(card.num_classes, ignore_index=IGNORE_INDEX)
    with Progress(len(dataset), f"evaluate {split}", "image", enabled=progress) as bar:
        for start in range(0, len(dataset), batch_size):
            indices = range(start, min(start + batch_size, len(dataset)))
            samples = [_read(dataset, index, card) for index in indices]
            predictions = predictor.predict_batch(
                [image for image, _ in samples], sources=[dataset.paths(i)[0] for i in indices]
            )
            for index, (image, truth), prediction in zip(
                indices, samples, predictions, strict=True
            ):
                matrix.update(prediction.labels, truth)
                recorder(str(dataset.ids[index]), image, truth, prediction.labels)
            bar.update(len(indices))
    _refuse_0_255_masks(matrix, recorder.ignored_pixels, card, split, dataset.info.mask_dir)
    report = EvaluationReport(
        checkpoint=card.path,
        data_root=str(Path(data_root).resolve()),
        split=split,
        num_images=len(dataset),
        class_names=list(card.class_names),
        scores=matrix.compute(),
        confusion=matrix.matrix,
        region_scores=region_scores.summary() if region_scores is not None else None,
        threshold=predictor.options.threshold,
        tta=predictor.options.tta,
        out_dir=out,
        table=matrix.format_table(list(card.class_names)),
        model=dict(predictor.settings),
        per_image=worst_first(recorder.rows),
        postprocessing=predictor.options.postprocessing.to_dict(),
    )
    report.notes = evaluation_notes(report, recorder.ignored_pixels, dataset.info.class_names)
    report.files["confusion matrix"] = plot_confusion(
        report.confusion, list(card.class_names), out / "confusion_matrix.png"
    )
    report.files["per-image scores"] = write_per_image_csv(
        report.per_image, report.class_names, out / "per_image.csv"
    )
    if recorder.save_panels(out / "panels"):
        report.files["panels of the worst images"] = out / "panels"
    if save_postprocessing:
        report.files["stored post-processing"] = store_postprocessing(report, card)
    report.files["report"] = out / "report.json"
    write_text(out / "report.json", json.dumps(report.to_dict(), indent=2) + "\n")
    if verbose:
        print(report.summary())
    return report


def store_postprocessing(report: EvaluationReport, card: ModelCard) -> Path:
    """Write the post-processing ``report`` applied to the checkpoint's
    ``RUN/postprocessing.json`` (atomically), with what it scored, for people reading it."""
    from unetlab.artifacts.read import postprocessing_path
    from unetlab.fs.atomic import write_text
    from unetlab.inference.postprocessing import PostProcessing

    stored = PostProcessing.from_dict(report.postprocessing or {})
    content = {
        "postprocessing": stored.to_dict(),
        "description": stored.describe(report.class_names),
        "class_names": report.class_names,
        "measured": {
            "checkpoint": report.checkpoint,
            "data_root": report.data_root,
            "split": report.split,
            "miou": report.scores["miou"],
        },
    }
    text = json.dumps(json_ready(content), indent=2) + "\n"
    return write_text(postprocessing_path(card.path), text)


def _read(dataset: Any, index: int, card: ModelCard) -> tuple[np.ndarray, np.ndarray]:
    """The raw image and mask of one sample, with mask values the model cannot score named."""
    from unetlab.data.problems import VALUES, DataFileError

    try:
        return dataset.read(index)
    except DataFileError as exc:
        if exc.kind != VALUES:
            raise
        raise UnetlabError(
            f"{exc.message}: the model was trained for {card.num_classes} classes "
            f"({', '.join(card.class_names)})",
            exc.path,
            "evaluate on data labelled with the model's classes (0..N-1, 255 = ignore), or "
            "train a model for this dataset's classes",
        ) from None


def _refuse_0_255_masks(
    matrix: Any, ignored_pixels: int, card: ModelCard, split: str, mask_dir: Any
) -> None:
    """Binary masks holding only 0 and 255 would leave every foreground pixel unscored."""
    truth_pixels = matrix.matrix.sum(axis=1)  # rows = truth classes
    if truth_looks_0_255(card.num_classes, truth_pixels, ignored_pixels):
        raise UnetlabError(
            f"the masks of split '{split}' hold only 0 and 255 ({ignored_pixels} pixels are "
            "255): these look like 0/255 binary masks, and 255 means 'ignore' to unetlab, so "
            "every foreground pixel would go unscored",
            mask_dir,
            f"run 'unetlab data fix-binary {mask_dir}' to rewrite 0/255 masks as 0/1",
        )
