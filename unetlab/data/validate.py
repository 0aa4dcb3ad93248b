"""Check a whole dataset before training and report every problem at once.

A training run that dies at image 4,000, or silently learns nothing because masks are 0/255,
wastes hours; ``check_dataset`` reads every file once (a few seconds for hundreds of images:
Pillow decodes in threads, class counts are one ``bincount`` per mask) and lists all problems,
each naming its file and what to do. Its report also carries what the trainer needs to know
about the data: the number of classes, class pixel frequencies (for class weights), image sizes
and channel counts.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unetlab import IGNORE_INDEX
from unetlab.data.binary import is_zero_255, zero_255_means_binary
from unetlab.data.io import read_image, read_mask
from unetlab.data.layouts import ALL, DatasetInfo, dataset_info
from unetlab.data.problems import (
    CHANNELS,
    CLASSES,
    MISSING,
    DataFileError,
    DatasetProblems,
    Problem,
    binary_0_255_problem,
    mask_values_problem,
    shorten,
    size_problem,
    split_problems,
    value_counts,
)


@dataclass
class _Sample:
    """What reading one id taught us."""

    sample_id: str
    mask_path: Path | None = None
    size: tuple[int, int] | None = None  # w, h
    channels: int | None = None
    dtype: str | None = None
    counts: np.ndarray | None = None  # pixels per mask value 0..255
    problems: list[Problem] = field(default_factory=list)


@dataclass
class DatasetReport:
    """Everything ``check_dataset`` learnt: statistics per split and the problems found."""

    info: DatasetInfo
    splits: dict[str, list[str]]
    num_classes: int
    num_classes_source: str  # "given", "classes.txt" or "masks" (inferred)
    class_pixels: dict[str, np.ndarray]  # split -> pixels per class (length num_classes)
    ignored_pixels: dict[str, int]
    image_sizes: dict[str, Counter]  # split -> Counter of (width, height)
    channels: Counter  # channel count -> images
    dtypes: Counter  # "uint8" / "uint16" -> images
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def class_names(self) -> list[str]:
        names = self.info.class_names or []
        return [names[i] if i < len(names) else f"class_{i}" for i in range(self.num_classes)]

    @property
    def in_channels(self) -> int | None:
        """The channel count of the images (the most common one if they differ)."""
        return self.channels.most_common(1)[0][0] if self.channels else None

    def class_frequencies(self, split: str | None = None) -> np.ndarray:
        """Share of each class among the non-ignored pixels of ``split`` (all splits: None)."""
        pixels = (
            self.class_pixels[split]
            if split is not None
            else sum(self.class_pixels.values(), np.zeros(self.num_classes, np.int64))
        )
        total = pixels.sum()
        return pixels / total if total else np.zeros(self.num_classes)

    def raise_if_problems(self, max_listed: int = 20) -> None:
        """One :class:`UnetlabError` listing the first ``max_listed`` problems (if any)."""
        if len(self.problems) == 1:
            raise self.problems[0].to_error()
        if self.problems:
            raise DatasetProblems(self.info.root, self.problems, max_listed)


def check_dataset(
    root: str | Path,
    num_classes: int | None = None,
    splits: Sequence[str] = ("train", "val"),
    *,
    raise_on_problems: bool = True,
    workers: int | None = None,
) -> DatasetReport:
    """Read every image and mask of ``splits`` once and report all problems and statistics.

    Without split files the whole dataset (split ``"all"``) is checked. ``num_classes``
    defaults to ``classes.txt``, else it is inferred from the largest mask value. With
    ``raise_on_problems`` (the default) any problem raises one error listing them.
    """
    info = dataset_info(root)
    problems: list[Problem] = []
    warnings: list[str] = []
    split_ids: dict[str, list[str]] = {}
    known = [info.load_split(split) for split in splits]  # reads lists given as paths
    if not info.splits and not (known and all(known)):  # all known: "all", auto-train/val
        warnings.append(
            f"no split files in {info.split_dir}: checked every image as split '{ALL}' "
            f"(run 'unetlab data split {info.root}' to make train/val lists)"
        )
        splits = (ALL,)
    for split in splits:
        if not info.load_split(split):
            problems.append(
                Problem(
                    MISSING,
                    str(info.split_file(split)),
                    f"split file for '{split}' not found (found: {', '.join(sorted(info.splits))})",
                    f"write it (one id per line) or run 'unetlab data split {info.root}'",
                )
            )
            continue
        split_ids[split] = info.ids(split)
        problems += split_problems(
            split,
            info.split_file(split),
            split_ids[split],
            info.images,
            info.masks,
            info.image_dir,
            info.mask_dir,
        )
    warnings += _overlap_warnings(split_ids)

    unique_ids = list(dict.fromkeys(i for ids in split_ids.values() for i in ids))
    with ThreadPoolExecutor(workers or min(4, os.cpu_count() or 1)) as pool:
        samples = {s.sample_id: s for s in pool.map(lambda i: _inspect(info, i), unique_ids)}

    num_classes, source = _num_classes(info, samples.values(), num_classes, problems)
    problems += _mask_problems(info, samples, num_classes)
    problems += _channel_problems(info, samples)
    for sample in samples.values():
        problems += sample.problems
    report = DatasetReport(
        info=info,
        splits=split_ids,
        num_classes=num_classes,
        num_classes_source=source,
        class_pixels={},
        ignored_pixels={},
        image_sizes={},
        channels=Counter(s.channels for s in samples.values() if s.channels),
        dtypes=Counter(s.dtype for s in samples.values() if s.dtype),
        problems=problems,
        warnings=warnings,
    )
    for split, ids in split_ids.items():
        counts = np.zeros(256, np.int64)
        for counted in (samples[i].counts for i in ids if i in samples):
            if counted is not None:
                counts += counted
        report.class_pixels[split] = counts[:num_classes].astype(np.int64)
        report.ignored_pixels[split] = int(counts[IGNORE_INDEX])
        report.image_sizes[split] = Counter(samples[i].size for i in ids if samples[i].size)
    if raise_on_problems:
        report.raise_if_problems()
    return report


def _inspect(info: DatasetInfo, sample_id: str) -> _Sample:
    sample = _Sample(sample_id)
    image_path, mask_path = info.image_path(sample_id), info.mask_path(sample_id)
    image = mask = None
    if image_path is not None:
        try:
            image = read_image(image_path)
            sample.size = (image.shape[1], image.shape[0])
            sample.channels, sample.dtype = image.shape[2], str(image.dtype)
        except DataFileError as exc:
            sample.problems.append(exc.problem)
    if mask_path is not None:
        sample.mask_path = mask_path
        try:
            mask = read_mask(mask_path)
            sample.counts = value_counts(mask)
        except DataFileError as exc:
            sample.problems.append(exc.problem)
    if image is not None and mask is not None:
        assert image_path is not None and mask_path is not None
        problem = size_problem(image_path, mask_path, image.shape[:2], mask.shape)
        if problem is not None:
            sample.problems.append(problem)
    return sample


def _num_classes(
    info: DatasetInfo, samples: Iterable[_Sample], given: int | None, problems: list[Problem]
) -> tuple[int, str]:
    known = info.num_classes
    if given is not None:
        if given < 1:
            raise DataFileError(CLASSES, f"num_classes must be at least 1, got {given}", None)
        if known is not None and known != given:
            problems.append(
                Problem(
                    CLASSES,
                    str(info.classes_file),
                    f"classes.txt names {known} classes but num_classes is {given}",
                    "make them agree: fix classes.txt or the number of classes you pass",
                )
            )
        return given, "given"
    if known is not None:
        return known, "classes.txt"
    highest = [
        int(np.flatnonzero(s.counts[:IGNORE_INDEX]).max(initial=0))
        for s in samples
        if s.counts is not None
    ]
    return max(2, max(highest, default=0) + 1), "masks"


def _mask_problems(info: DatasetInfo, samples: dict[str, _Sample], num_classes: int) -> list:
    """Values beyond the classes, and 0/255 binary masks (all of them, or a few among 0/1)."""
    read = [(s.mask_path, s.counts) for s in samples.values() if s.counts is not None]
    with_counts = [(path, counts) for path, counts in read if path is not None]
    union = np.zeros(256, bool)
    for _, counts in with_counts:
        union |= counts > 0
    value_sets = [np.flatnonzero(counts).tolist() for _, counts in with_counts]
    paths = [p for (p, _), values in zip(with_counts, value_sets, strict=True)
             if is_zero_255(values)]
    if not zero_255_means_binary(value_sets, num_classes):
        paths = []  # 255 is this dataset's ignore label: 0/255 masks are object-less masks
    problems = []
    if paths and set(np.flatnonzero(union)) == {0, IGNORE_INDEX}:  # a 0/255 dataset: one message
        problems.append(binary_0_255_problem(paths, info.mask_dir))
    elif paths and union[1:IGNORE_INDEX].any():  # a few 0/255 masks among index masks
        problems += [binary_0_255_problem([p], info.mask_dir) for p in paths]
    for path, counts in with_counts:
        problem = mask_values_problem(path, np.flatnonzero(counts), num_classes)
        if problem is not None:
            problems.append(problem)
    return problems


def _channel_problems(info: DatasetInfo, samples: dict[str, _Sample]) -> list[Problem]:
    by_channels: dict[int, list[str]] = {}
    for sample in samples.values():
        if sample.channels is not None:
            by_channels.setdefault(sample.channels, []).append(sample.sample_id)
    if len(by_channels) < 2:
        return []
    groups = sorted(by_channels.items(), key=lambda item: -len(item[1]))
    parts = []
    for channels, ids in groups:
        names = shorten([info.images[i][0].name for i in ids], 3)
        parts.append(f"{channels} channel(s) in {len(ids)} image(s) ({names})")
    return [
        Problem(
            CHANNELS,
            str(info.image_dir),
            "images have different channel counts: " + "; ".join(parts),
            "convert them to one type (all RGB or all grayscale): a network takes a fixed "
            "number of input channels",
        )
    ]


def _overlap_warnings(split_ids: dict[str, list[str]]) -> list[str]:
    names = sorted(split_ids)
    warnings = []
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            shared = set(split_ids[first]) & set(split_ids[second])
            if shared and ALL not in (first, second):
                warnings.append(
                    f"{len(shared)} id(s) are in both '{first}' and '{second}' "
                    f"(e.g. {sorted(shared)[0]}): validation scores will be optimistic"
                )
    return warnings


def format_report(report: DatasetReport, list_problems: bool = True) -> str:
    """The human-readable summary ``unetlab data check`` prints (problems listed or counted)."""
    info = report.info
    lines = [
        f"Dataset {info.root} ({info.layout} layout), {report.num_classes} classes "
        f"(from {report.num_classes_source})",
        "",
        f"{'split':<10}{'images':>8}  image sizes (w x h)",
    ]
    for split, ids in report.splits.items():
        sizes = report.image_sizes.get(split, Counter())
        lines.append(f"{split:<10}{len(ids):>8}  {_describe_sizes(sizes)}")
    channels = ", ".join(f"{c} channel(s) x{n}" for c, n in sorted(report.channels.items()))
    dtypes = ", ".join(f"{d} x{n}" for d, n in sorted(report.dtypes.items()))
    lines += ["", f"images: {channels or 'none read'}; pixel types: {dtypes or '-'}", ""]
    splits = list(report.splits)
    header = f"{'class':<24}" + "".join(f"{s:>10}" for s in splits)
    lines += ["class pixel frequencies (share of non-ignored pixels):", header]
    shares = {s: report.class_frequencies(s) for s in splits}
    for index, name in enumerate(report.class_names):
        row = f"{f'{index} {name}':<24}" + "".join(f"{shares[s][index]:>10.2%}" for s in splits)
        lines.append(row)
    totals = {s: report.class_pixels[s].sum() + report.ignored_pixels[s] for s in splits}
    ignored = "".join(
        f"{(report.ignored_pixels[s] / totals[s] if totals[s] else 0):>10.2%}" for s in splits
    )
    lines.append(f"{f'{IGNORE_INDEX} ignore (of all)':<24}{ignored}")
    for warning in report.warnings:
        lines.append(f"warning: {warning}")
    lines.append("")
    if report.problems:
        lines.append(f"{len(report.problems)} problem(s)" + (":" if list_problems else ""))
        lines += [f"  - {problem}" for problem in report.problems if list_problems]
    else:
        lines.append("no problems found")
    return "\n".join(lines)


def _describe_sizes(sizes: Counter) -> str:
    if not sizes:
        return "-"
    if len(sizes) <= 3:
        return ", ".join(f"{w}x{h} ({n})" for (w, h), n in sizes.most_common())
    widths = [w for w, _ in sizes]
    heights = [h for _, h in sizes]
    return f"{len(sizes)} sizes, w {min(widths)}-{max(widths)}, h {min(heights)}-{max(heights)}"
