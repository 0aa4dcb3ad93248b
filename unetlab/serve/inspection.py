"""The split as a table of images, worst first, computed once and cached in the run folder.

Every image of the split is predicted by the same predictor the page uses and scored on its own
(:func:`unetlab.metrics.per_image.image_row`, the rows of ``unetlab evaluate``'s
``per_image.csv``); the pixels of all images make the split's confusion
matrix, so the whole-split scores equal ``unetlab evaluate``'s for the same model and split.
Predictions are kept as index PNGs beside ``inspection.json``; a fingerprint of the model file,
the dataset files, the threshold and the post-processing decides whether the cache still holds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unetlab import IGNORE_INDEX
from unetlab.data.datasets import SegmentationDataset
from unetlab.errors import UnetlabError
from unetlab.inference.core import ArrayPredictor

CACHE_FORMAT = 2

Runner = Callable[[Callable[[], Any]], Any]
Progress = Callable[[int, int], None]


def cache_folder(run: Path, model_file: Path, data_root: str | Path, split: str) -> Path:
    """``RUN/serve/<model file>/<split>-<hash of the dataset path>``."""
    digest = hashlib.sha1(str(Path(data_root).resolve()).encode()).hexdigest()[:8]
    return run / "serve" / model_file.name / f"{_safe(split)}-{digest}"


@dataclass
class Inspection:
    """A scored split: ``rows`` (one per image, worst first), the split's ``scores``
    (:meth:`ConfusionMatrix.compute`) and ``confusion`` matrix, and where predictions live."""

    split: str
    data_root: str
    class_names: list[str]
    ids: list[str]
    rows: list[dict[str, Any]]
    scores: dict[str, Any]
    confusion: list[list[int]]
    boundary_class: int | None
    folder: Path | None
    from_cache: bool = False
    memory: dict[int, np.ndarray] | None = None

    def prediction(self, index: int) -> np.ndarray:
        """The predicted labels of image ``index`` (position in the split file)."""
        from unetlab.data.io import read_mask

        if self.memory is not None:
            return self.memory[index]
        assert self.folder is not None  # kept on disk when not in memory
        return read_mask(self.folder / prediction_name(index))

    def to_dict(self) -> dict[str, Any]:
        from unetlab.engine.report import json_ready

        return json_ready(
            {
                "split": self.split,
                "data_root": self.data_root,
                "class_names": self.class_names,
                "rows": self.rows,
                "scores": self.scores,
                "confusion": self.confusion,
                "boundary_class": self.boundary_class,
                "from_cache": self.from_cache,
            }
        )


def open_split(predictor: ArrayPredictor, data_root: str | Path, split: str) -> SegmentationDataset:
    """The split's image/mask pairs, checked against the model's classes and channels."""
    from unetlab.data.datasets import open_dataset

    dataset = open_dataset(
        data_root, split, num_classes=predictor.num_classes, in_channels=predictor.in_channels
    )
    if not len(dataset):
        raise UnetlabError(f"split '{split}' has no images", data_root, "choose another split")
    return dataset


def prediction_name(index: int) -> str:
    return f"prediction_{index:05d}.png"


def fingerprint(
    model_file: Path,
    dataset: SegmentationDataset,
    threshold: float | None,
    postprocessing: dict[str, Any] | None = None,
) -> str:
    """Changes when the model file, the split's files, the threshold or the post-processing
    change."""
    items = [f"format {CACHE_FORMAT}", f"threshold {threshold}"]
    items.append(f"postprocessing {json.dumps(postprocessing, sort_keys=True)}")
    for path in [model_file, *(p for i in range(len(dataset)) for p in dataset.paths(i))]:
        stat = Path(path).stat()
        items.append(f"{Path(path).resolve()} {stat.st_size} {stat.st_mtime_ns}")
    return hashlib.sha1("\n".join(items).encode()).hexdigest()


def inspect_split(
    predictor: ArrayPredictor,
    dataset: SegmentationDataset,
    model_file: Path,
    folder: Path | None,
    run: Runner = lambda work: work(),
    progress: Progress | None = None,
) -> Inspection:
    """Score every image of ``dataset`` (a split, see :func:`open_split`) or read the cache in
    ``folder``; see the module docstring.

    ``run(work)`` executes each image's prediction (the server passes its model worker, so
    uploads are not stuck behind a whole split); ``progress(done, total)`` follows the images.
    ``folder`` None keeps the predictions in memory.
    """
    from unetlab.data.io import write_mask
    from unetlab.engine.regions import resolve_boundary_class
    from unetlab.metrics import ConfusionMatrix
    from unetlab.metrics.per_image import image_row, worst_first

    names = list(predictor.class_names)
    classes = len(names)
    split, data_root = dataset.split, dataset.info.root
    stamp = fingerprint(
        model_file,
        dataset,
        predictor.options.threshold,
        predictor.options.postprocessing.to_dict(),
    )
    if folder is not None:
        cached = _read_cache(folder, stamp, len(dataset))
        if cached is not None:
            return cached
    boundary = resolve_boundary_class(names, None) if classes == 2 else None
    palette = _palette(predictor)
    matrix = ConfusionMatrix(classes, ignore_index=IGNORE_INDEX)
    rows: list[dict[str, Any]] = []
    memory: dict[int, np.ndarray] | None = {} if folder is None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    for index, sample_id in enumerate(dataset.ids):

        def work(index: int = index) -> tuple[np.ndarray, np.ndarray]:
            image, truth = dataset.read(index)
            return predictor.predict(image, source=dataset.paths(index)[0]).labels, truth

        labels, truth = run(work)
        matrix.update(labels, truth)
        row = image_row(sample_id, labels, truth, classes, boundary, IGNORE_INDEX)
        rows.append({"index": index, **row})
        if memory is not None:
            memory[index] = labels
        elif folder is not None:
            # the cache is this command's own: a stale prediction is replaced
            write_mask(folder / prediction_name(index), labels, palette, overwrite=True)
        if progress is not None:
            progress(index + 1, len(dataset))
    rows = worst_first(rows)
    result = Inspection(
        split=split,
        data_root=str(Path(data_root).resolve()),
        class_names=names,
        ids=list(dataset.ids),
        rows=rows,
        scores=matrix.compute(),
        confusion=matrix.matrix.tolist(),
        boundary_class=boundary,
        folder=folder,
        memory=memory,
    )
    if folder is not None:
        _write_json(folder / "inspection.json", {"fingerprint": stamp, **result.to_dict()})
    return result


def _read_cache(folder: Path, stamp: str, count: int) -> Inspection | None:
    path = folder / "inspection.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if data.get("fingerprint") != stamp or len(data.get("rows", [])) != count:
        return None
    if not all((folder / prediction_name(i)).is_file() for i in range(count)):
        return None
    rows = data["rows"]
    return Inspection(
        split=data["split"],
        data_root=data["data_root"],
        class_names=data["class_names"],
        ids=[row["id"] for row in sorted(rows, key=lambda row: row["index"])],
        rows=rows,
        scores=data["scores"],
        confusion=data["confusion"],
        boundary_class=data["boundary_class"],
        folder=folder,
        from_cache=True,
    )


def _palette(predictor: ArrayPredictor) -> list[tuple[int, int, int]]:
    from unetlab.serve.model import palette

    return palette(predictor)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomic write with the user's umask (:mod:`unetlab.fs.atomic`); the cache is this
    command's own file, so a stale entry is replaced."""
    from unetlab.fs.atomic import write_text

    write_text(path, json.dumps(data), overwrite=True)


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text) or "split"
