"""Measure a model on a labelled split: the confusion matrix, the scores, the pictures.

:func:`collect_confusion` is the one measuring loop: the trainer's validation and ``unetlab
evaluate`` both use it, so a val mIoU logged during training is the number evaluate reports for
the same checkpoint and split. Logits come from :func:`unetlab.inference.forward.predict_logits`
(any image size, same or valid padding, optional test-time augmentation) and labels from
:func:`unetlab.inference.postprocess.logits_to_labels`, the rule predict and export also use.

:func:`evaluate` adds what a person wants to read: the per-class table, the mean scores, for
binary tasks the EM scores (pixel error, adapted Rand error), ``report.json``, a
confusion-matrix PNG and image | truth | prediction panels.

Adapted Rand error needs *regions* (objects), not classes. As in the ISBI 2012 challenge,
regions are the connected components (4-connected) of the non-boundary class, and truth pixels
of the boundary class are not scored (foreground-restricted Rand). The boundary class is, by
default, a class named ``membrane`` (or ``boundary``, ``border``, ``edge``, ``contour``) if there
is one, else class 0. Class 0 because a binary task that names no boundary is figure/ground with
0 = background, whose objects are the components of class 1; ISBI labels converted from their
original encoding (0 = membrane, 255 = cell) by ``unetlab data fix-binary`` also have the
membrane at 0. Ignored truth pixels (255) are not scored either. The challenge averaged over
slices; here pixel error and Rand scores are computed per image and averaged over the images.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unetlab import IGNORE_INDEX
from unetlab.data.binary import truth_looks_0_255
from unetlab.data.preprocess import Normalization
from unetlab.engine.distributed import unwrap
from unetlab.errors import UnetlabError
from unetlab.inference.forward import predict_logits
from unetlab.inference.postprocess import logits_to_labels, num_output_classes
from unetlab.metrics import ConfusionMatrix
from unetlab.metrics.scores import nanmean

BOUNDARY_CLASS_NAMES = ("membrane", "boundary", "border", "edge", "contour")
"""Class names taken as the boundary class for the Rand error when none is given."""

BatchHook = Callable[[dict[str, Any], torch.Tensor], None]
LossFn = Callable[..., torch.Tensor]


# ---------------------------------------------------------------- the measuring loop


@dataclass
class Measurement:
    """What one pass over a loader measured (summed over all processes when distributed).

    ``matrix``: the confusion matrix of every non-ignored pixel; ``loss``: the mean of
    ``loss_fn`` over the images (None without a ``loss_fn``); ``num_images``: images seen.
    """

    matrix: ConfusionMatrix
    loss: float | None
    num_images: int


def collect_confusion(
    model: nn.Module,
    loader: Any,
    num_classes: int,
    device: str | torch.device,
    *,
    autocast_dtype: torch.dtype | None = None,
    threshold: float = 0.5,
    loss_fn: LossFn | None = None,
    tta: bool | str = False,
    on_batch: BatchHook | None = None,
) -> Measurement:
    """Run ``model`` over ``loader`` (batches of sample dicts) and count its confusion matrix.

    Logits at input size come from ``predict_logits`` (``tta`` as there; a DDP wrapper is
    looked through), labels from ``logits_to_labels`` (``threshold`` for one-channel models).
    With ``loss_fn`` (called as ``loss_fn(logits, mask, weight=...)``, like the trainer's loss)
    the mean loss per image is measured too. ``on_batch(batch, labels)`` sees each batch with
    its predicted labels (on ``device``). When ``torch.distributed`` is initialised every rank
    gets the totals of all ranks (each rank must call this). Runs in eval mode under
    ``torch.inference_mode``, then restores each module's mode (a frozen encoder stays in eval).
    """
    device = torch.device(device)
    network = unwrap(model)
    matrix = ConfusionMatrix(num_classes, ignore_index=IGNORE_INDEX)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)  # on device: no sync/batch
    num_images = 0
    modes = {module: module.training for module in network.modules()}
    network.eval()
    try:
        with torch.inference_mode():
            for batch in loader:
                images = batch["image"].to(device, non_blocking=True)
                masks = batch["mask"].to(device, non_blocking=True).long()
                with torch.autocast(
                    device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None
                ):
                    logits = predict_logits(network, images, tta=tta)
                    if loss_fn is not None:
                        weight = batch.get("weight")
                        weight = None if weight is None else weight.to(device, non_blocking=True)
                        loss = loss_fn(logits, masks, weight=weight)
                        loss_sum += loss.detach().double() * len(images)
                if num_output_classes(logits.shape[1]) != num_classes:
                    raise UnetlabError(
                        f"the model predicts {num_output_classes(logits.shape[1])} classes but "
                        f"{num_classes} are scored",
                        hint="score with the number of classes the model was trained for",
                    )
                labels = logits_to_labels(logits, threshold)
                matrix.update(labels, masks)
                num_images += len(images)
                if on_batch is not None:
                    on_batch(batch, labels)
    finally:
        for module, training in modes.items():
            module.train(training)

    totals = torch.stack([loss_sum, torch.tensor(float(num_images), device=device).double()])
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        matrix.all_reduce()
        on_cpu = torch.distributed.get_backend() != "nccl"
        totals = totals.cpu() if on_cpu else totals
        torch.distributed.all_reduce(totals)
    total_loss, num_images = float(totals[0]), int(totals[1])
    mean_loss = total_loss / num_images if loss_fn is not None and num_images else None
    return Measurement(matrix=matrix, loss=mean_loss, num_images=num_images)


# ---------------------------------------------------------------- what the checkpoint says


@dataclass(frozen=True)
class ModelCard:
    """Everything evaluate needs to know about a checkpoint's model, read once."""

    path: str
    out_channels: int
    in_channels: int
    class_names: list[str]
    palette: list[tuple[int, int, int]]
    normalization: Normalization

    @property
    def num_classes(self) -> int:
        return num_output_classes(self.out_channels)

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any]) -> ModelCard:
        spec, data = checkpoint["model"], checkpoint.get("data") or {}
        path = str(checkpoint.get("path", ""))
        out_channels, in_channels = int(spec["num_classes"]), int(spec.get("in_channels", 3))
        num_classes = num_output_classes(out_channels)
        names = [str(n) for n in data.get("class_names") or []] or [
            f"class {i}" for i in range(num_classes)
        ]
        if len(names) != num_classes:
            raise UnetlabError(
                f"the checkpoint names {len(names)} classes but its model predicts {num_classes}",
                path,
                "the checkpoint is inconsistent: retrain, or fix its data.class_names",
            )
        has_stats = data.get("mean") is not None and data.get("std") is not None
        return cls(
            path=path,
            out_channels=out_channels,
            in_channels=in_channels,
            class_names=names,
            palette=_palette(data.get("class_colors"), num_classes),
            normalization=(
                Normalization.from_dict(data)
                if has_stats
                else Normalization.default_for(in_channels)
            ),
        )

    def threshold(self, requested: float | None) -> float | None:
        """The foreground threshold of a one-channel model (0.5 unless given); None otherwise."""
        if self.out_channels != 1:
            if requested is not None:
                raise UnetlabError(
                    f"a threshold applies to one-channel (sigmoid) binary models; this model "
                    f"has {self.out_channels} output channels and labels are their argmax",
                    self.path,
                    "leave out --threshold",
                )
            return None
        return 0.5 if requested is None else float(requested)


def _palette(colors: Sequence[Sequence[int]] | None, num_classes: int) -> list[tuple[int, ...]]:
    """The checkpoint's class colours, completed like ``predict`` does (VOC colour map)."""
    from unetlab.inference.overlay import make_palette

    return [tuple(int(c) for c in color) for color in make_palette(colors)[:num_classes]]


def resolve_boundary_class(class_names: Sequence[str], boundary_class: int | str | None) -> int:
    """The class whose pixels separate regions for the Rand error (see the module docstring).

    ``boundary_class``: an index, a class name (case-insensitive), or None for the default:
    the first class named like ``membrane``/``boundary``/..., else class 0.
    """
    names = [name.lower() for name in class_names]
    choices = f"use one of {list(class_names)} or a class index"
    if boundary_class is None:
        return next((i for i, name in enumerate(names) if name in BOUNDARY_CLASS_NAMES), 0)
    text = str(boundary_class).strip()
    if not text.lstrip("-").isdigit():
        if text.lower() not in names:
            raise UnetlabError(f"no class named {text!r} to be the boundary class", hint=choices)
        return names.index(text.lower())
    index = int(text)
    if not 0 <= index < len(class_names):
        raise UnetlabError(
            f"boundary class {index} does not exist (classes 0..{len(class_names) - 1})",
            hint=choices,
        )
    return index


# ---------------------------------------------------------------- per-image work


class RegionScores:
    """Per-image pixel error and adapted Rand error of a two-class task, then their means."""

    def __init__(self, boundary_class: int, class_names: Sequence[str]):
        self.boundary_class = boundary_class
        self.class_names = list(class_names)
        self.rows: list[dict[str, Any]] = []

    def add(self, sample_id: str, prediction: np.ndarray, truth: np.ndarray) -> None:
        from unetlab.metrics.em import adapted_rand_error, membrane_to_regions, pixel_error

        boundary = self.boundary_class
        scored_truth = np.where(truth == IGNORE_INDEX, boundary, truth)  # ignored: not scored
        error, precision, recall = adapted_rand_error(
            membrane_to_regions(prediction, membrane_class=boundary),
            membrane_to_regions(scored_truth, membrane_class=boundary),
        )
        self.rows.append(
            {
                "id": sample_id,
                "pixel_error": pixel_error(prediction, truth, ignore_index=IGNORE_INDEX),
                "adapted_rand_error": error,
                "rand_precision": precision,
                "rand_recall": recall,
            }
        )

    def summary(self) -> dict[str, Any]:
        keys = ("pixel_error", "adapted_rand_error", "rand_precision", "rand_recall")
        return {
            "boundary_class": self.boundary_class,
            "boundary_class_name": self.class_names[self.boundary_class],
            "averaged_over": "images",
            **{key: nanmean(np.array([row[key] for row in self.rows], float)) for key in keys},
            "per_image": self.rows,
        }


class SampleRecorder:
    """The ``on_batch`` hook of evaluate: panels for the first images, EM scores, ignored pixels."""

    def __init__(
        self,
        card: ModelCard,
        panel_dir: Path,
        num_panels: int,
        region_scores: RegionScores | None,
    ):
        self.card = card
        self.panel_dir = panel_dir
        self.num_panels = num_panels
        self.region_scores = region_scores
        self.panels: list[Path] = []
        self.ignored_pixels = 0

    def __call__(self, batch: dict[str, Any], labels: torch.Tensor) -> None:
        from unetlab.engine.plots import save_panel

        predictions = labels.cpu().numpy().astype(np.uint8)
        truths = batch["mask"].cpu().numpy()
        self.ignored_pixels += int((truths == IGNORE_INDEX).sum())
        for i, sample_id in enumerate(batch["id"]):
            if self.region_scores is not None:
                self.region_scores.add(str(sample_id), predictions[i], truths[i])
            if len(self.panels) < self.num_panels:
                norm = self.card.normalization
                image = denormalize(batch["image"][i], norm.mean, norm.std)
                path = self.panel_dir / f"{_safe_name(sample_id)}.png"
                self.panels.append(
                    save_panel(
                        image,
                        truths[i],
                        predictions[i],
                        self.card.palette,
                        path,
                        self.card.class_names,
                    )
                )


def denormalize(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Undo ``image_to_tensor``'s normalisation for display: C x H x W -> H x W x C in [0, 1]."""
    channels = image.shape[0]
    mean_t = torch.tensor(list(mean)[:channels], dtype=torch.float32).view(-1, 1, 1)
    std_t = torch.tensor(list(std)[:channels], dtype=torch.float32).view(-1, 1, 1)
    restored = image.detach().float().cpu() * std_t + mean_t
    return restored.clamp(0, 1).permute(1, 2, 0).numpy()


def _safe_name(sample_id: Any) -> str:
    """A file name for a sample id (ids of nested folders contain '/')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(sample_id)) or "sample"


# ---------------------------------------------------------------- the report


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

    MEANS = ("miou", "mpa", "mean_precision", "mean_dice", "pixel_accuracy", "fwiou")
    PER_CLASS = ("iou", "recall", "precision", "dice")

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
        return _json_ready(
            {
                "checkpoint": self.checkpoint,
                "data_root": self.data_root,
                "split": self.split,
                "num_images": self.num_images,
                "class_names": self.class_names,
                "threshold": self.threshold,
                "tta": self.tta,
                **{key: self.scores[key] for key in self.MEANS},
                "per_class": self.per_class(),
                "binary": self.region_scores,
                "confusion_matrix": self.confusion.tolist(),
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
        lines += [f"note: {note}" for note in self.notes]
        lines += [f"{name}: {path}" for name, path in self.files.items()]
        return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:.2f}%"


def _num(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4f}"


def _json_ready(value: Any) -> Any:
    """Plain JSON values: numpy to Python, NaN and infinities to null."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_ready(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _notes(
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


# ---------------------------------------------------------------- evaluate


def _one_size_collate(data_root: str | Path) -> Callable[[list[dict[str, Any]]], Any]:
    """The default collate, with a clear error when the images of a batch differ in size."""
    from torch.utils.data import default_collate

    def collate(samples: list[dict[str, Any]]) -> Any:
        sizes = {tuple(sample["image"].shape[-2:]) for sample in samples}
        if len(sizes) > 1:
            ids = ", ".join(str(sample["id"]) for sample in samples)
            raise UnetlabError(
                f"the images of one batch ({ids}) differ in size ({', '.join(map(str, sizes))})",
                data_root,
                "use --batch-size 1 for datasets whose images have different sizes",
            )
        return default_collate(samples)

    return collate


def default_out_dir(checkpoint_path: str | Path, split: str) -> Path:
    """``RUN/evaluation/<split>`` for ``RUN/checkpoints/x.pt``, else beside the checkpoint."""
    path = Path(checkpoint_path)
    run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return run / "evaluation" / split


def evaluate(
    checkpoint_or_run: str | Path,
    data_root: str | Path,
    split: str = "val",
    out_dir: str | Path | None = None,
    device: str | torch.device = "auto",
    batch_size: int = 1,
    num_panels: int = 4,
    threshold: float | None = None,
    tta: bool | str = False,
    boundary_class: int | str | None = None,
    verbose: bool = False,
    precision: str = "fp32",
) -> EvaluationReport:
    """Evaluate a checkpoint (or a run folder's best one) on ``data_root``'s ``split``.

    Everything about the model comes from the checkpoint (architecture, class names and colours,
    normalisation). An exported ``.onnx`` file (fp32 or int8) is scored the same way, run by
    ONNX Runtime on the CPU: how to check what quantisation costs before deploying it.
    Writes ``report.json``, ``confusion_matrix.png`` and ``panels/<id>.png`` (the first
    ``num_panels`` images) into ``out_dir`` (default ``RUN/evaluation/<split>``).
    ``threshold`` (default 0.5, or the export's) is for one-channel binary models only;
    ``tta`` as in ``predict_logits``; ``boundary_class`` picks the region separator of the
    Rand error (module docstring). ``verbose`` prints :meth:`EvaluationReport.summary`.
    ``precision``: ``fp32``, ``bf16``/``fp16`` autocast or ``auto``, as for ``Predictor``.
    Existing outputs are never replaced unless inside :func:`unetlab.fs.atomic.overwriting`
    (the command's ``--overwrite``).
    """
    from unetlab.data import make_loader, open_dataset
    from unetlab.data.problems import VALUES, DataFileError
    from unetlab.engine.checkpoint import load_checkpoint, model_from_checkpoint
    from unetlab.engine.distributed import resolve_device
    from unetlab.engine.plots import plot_confusion
    from unetlab.export.onnx_module import OnnxModule, is_onnx_file
    from unetlab.fs.atomic import make_folder, refuse_existing, write_text
    from unetlab.inference.precision import autocast_dtype

    if is_onnx_file(checkpoint_or_run):  # an export (fp32 or int8), run by ONNX Runtime
        model: nn.Module = OnnxModule(checkpoint_or_run)
        checkpoint = model.as_checkpoint()
        device = "cpu"
        if threshold is None and int(checkpoint["model"]["num_classes"]) == 1:
            threshold = checkpoint["threshold"]  # the one stored at export, as predict uses
    else:
        checkpoint = load_checkpoint(checkpoint_or_run)
        model = model_from_checkpoint(checkpoint)
    card = ModelCard.from_checkpoint(checkpoint)
    threshold_used = card.threshold(threshold)
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
    torch_device = resolve_device(str(device))
    if not isinstance(model, OnnxModule):
        dtype = autocast_dtype(precision, torch_device)
    elif precision in ("fp32", "auto"):
        dtype = None  # an export runs in the precision it was exported in
    else:
        raise UnetlabError(
            f"precision {precision} applies to checkpoints; an .onnx file runs as exported",
            checkpoint_or_run,
            "leave out --precision",
        )
    model = model.to(torch_device)
    loader = make_loader(
        dataset, batch_size=batch_size, shuffle=False, collate_fn=_one_size_collate(data_root)
    )

    out = Path(out_dir) if out_dir is not None else default_out_dir(card.path, split)
    refuse_existing([out / "report.json", out / "confusion_matrix.png"])  # before any work
    make_folder(out)
    recorder = SampleRecorder(card, out / "panels", num_panels, region_scores)
    try:
        measured = collect_confusion(
            model,
            loader,
            card.num_classes,
            torch_device,
            threshold=0.5 if threshold_used is None else threshold_used,
            tta=tta,
            on_batch=recorder,
            autocast_dtype=dtype,
        )
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
    truth_pixels = measured.matrix.matrix.sum(axis=1)  # rows = truth classes
    if truth_looks_0_255(card.num_classes, truth_pixels, recorder.ignored_pixels):
        mask_dir = dataset.info.mask_dir
        raise UnetlabError(
            f"the masks of split '{split}' hold only 0 and 255 ({recorder.ignored_pixels} "
            "pixels are 255): these look like 0/255 binary masks, and 255 means 'ignore' to "
            "unetlab, so every foreground pixel would go unscored",
            mask_dir,
            f"run 'unetlab data fix-binary {mask_dir}' to rewrite 0/255 masks as 0/1",
        )
    report = EvaluationReport(
        checkpoint=card.path,
        data_root=str(Path(data_root).resolve()),
        split=split,
        num_images=measured.num_images,
        class_names=card.class_names,
        scores=measured.matrix.compute(),
        confusion=measured.matrix.matrix,
        region_scores=region_scores.summary() if region_scores is not None else None,
        threshold=threshold_used,
        tta=tta,
        out_dir=out,
        table=measured.matrix.format_table(card.class_names),
    )
    report.notes = _notes(report, recorder.ignored_pixels, dataset.info.class_names)
    report.files["confusion matrix"] = plot_confusion(
        report.confusion, card.class_names, out / "confusion_matrix.png"
    )
    if recorder.panels:
        report.files["panels"] = out / "panels"
    report.files["report"] = out / "report.json"
    write_text(out / "report.json", json.dumps(report.to_dict(), indent=2) + "\n")
    if verbose:
        print(report.summary())
    return report
