"""Post-processing of predicted label maps: small regions removed, one region per class kept,
holes filled (what nnU-Net and MONAI offer), applied after the labelling rule on the one
inference path, so ``predict``, ``evaluate`` and ``serve`` label alike.

Three steps, in this order, each on the map the previous one left:

1. ``min_size`` N: every region (4-connected pixels of one class, background included)
   smaller than N pixels is removed.
2. ``keep_largest`` classes: of each listed class only the largest region stays (the first in
   row order among equals); its other regions are removed.
3. ``fill_holes`` classes: background (class 0) pixels that a listed class encloses, i.e. that
   cannot reach the image border through pixels of other classes, take that class.

A removed region takes the label it shares the longest boundary with (pixel edges to pixels
that stay; ties go to the lower class index), which is the class around it for a speck inside
an object and the background for a blob in the open; a region that touches only removed
pixels becomes background. Regions are 4-connected (pixels sharing an edge), as the Rand
error's regions, ``scipy.ndimage.label``'s default and nnU-Net. Probabilities are not changed.

A checkpoint's stored post-processing is ``RUN/postprocessing.json``
(:func:`unetlab.artifacts.read.postprocessing_path`), an export's is in its metadata; both reach
the predictor through the model card (:func:`resolve_postprocessing`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from unetlab.errors import UnetlabError

ALL = "all"
"""In a class list: every class but the background (0)."""

ClassList = tuple[int | str, ...]
STEPS = ("min_size", "keep_largest", "fill_holes")


@dataclass(frozen=True)
class PostProcessing:
    """What to do to a label map after labelling (see the module docstring). ``keep_largest``
    and ``fill_holes`` list classes by index or name, or ``"all"``; :meth:`for_classes` turns
    them into indices for one model. The default does nothing."""

    min_size: int = 0
    keep_largest: ClassList = ()
    fill_holes: ClassList = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "keep_largest", _as_list(self.keep_largest))
        object.__setattr__(self, "fill_holes", _as_list(self.fill_holes))
        if isinstance(self.min_size, bool) or not isinstance(self.min_size, int | np.integer):
            raise UnetlabError(f"post-processing min_size {self.min_size!r} is not a whole number")
        if self.min_size < 0:
            raise UnetlabError(f"post-processing min_size {self.min_size} is negative")

    @property
    def active(self) -> bool:
        return bool(self.min_size > 1 or self.keep_largest or self.fill_holes)

    def for_classes(
        self, class_names: Sequence[str], source: str | Path | None = None
    ) -> PostProcessing:
        """This post-processing with class indices of a model with ``class_names``; a clear
        error for an unknown class or for filling holes of the background."""
        resolved = replace(
            self,
            keep_largest=_class_indices(self.keep_largest, class_names, source, "--keep-largest"),
            fill_holes=_class_indices(self.fill_holes, class_names, source, "--fill-holes"),
        )
        if 0 in resolved.fill_holes:
            raise UnetlabError(
                "holes are background pixels enclosed by a class: the background (class 0) "
                "has no holes to fill",
                source,
                "list foreground classes, or 'all' (every class but 0)",
            )
        return resolved

    def apply(self, labels: np.ndarray) -> np.ndarray:
        """The post-processed copy of an ``H x W`` label map (the same dtype); ``labels`` itself
        when nothing is to be done. Class lists must be indices (:meth:`for_classes`)."""
        if not self.active:
            return labels
        out = np.array(labels, copy=True)
        if self.min_size > 1:
            out = remove_small_regions(out, self.min_size)
        for label in self.keep_largest:
            out = keep_largest_region(out, int(label))
        for label in self.fill_holes:
            out = fill_holes(out, int(label))
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, as stored in ``postprocessing.json`` and an export's metadata."""
        return {
            "min_size": int(self.min_size),
            "keep_largest": list(self.keep_largest),
            "fill_holes": list(self.fill_holes),
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], source: str | Path | None = None
    ) -> PostProcessing:
        """Read :meth:`to_dict`'s form (unknown keys and wrong types are named)."""
        if not isinstance(data, Mapping):
            raise UnetlabError(
                f"post-processing must be a mapping of {', '.join(STEPS)}, got {data!r}", source
            )
        unknown = sorted(set(data) - set(STEPS))
        if unknown:
            raise UnetlabError(
                f"unknown post-processing step(s) {', '.join(map(str, unknown))}",
                source,
                f"the steps are {', '.join(STEPS)}",
            )
        try:
            return cls(**{key: data[key] for key in STEPS if data.get(key) is not None})
        except UnetlabError as exc:
            raise UnetlabError(exc.message, source, exc.hint) from None

    def describe(self, class_names: Sequence[str] | None = None) -> str:
        """One line for people, e.g. ``regions < 50 px removed; largest region kept: cell``."""
        if not self.active:
            return "none"

        def names(classes: Iterable[int | str]) -> str:
            return ", ".join(
                class_names[c] if class_names and isinstance(c, int) and c < len(class_names)
                else str(c)
                for c in classes
            )  # fmt: skip

        parts = []
        if self.min_size > 1:
            parts.append(f"regions < {self.min_size} px removed")
        if self.keep_largest:
            parts.append(f"largest region kept: {names(self.keep_largest)}")
        if self.fill_holes:
            parts.append(f"holes filled: {names(self.fill_holes)}")
        return "; ".join(parts)


def resolve_postprocessing(
    requested: PostProcessing | Mapping[str, Any] | None,
    stored: Mapping[str, Any] | None,
    class_names: Sequence[str],
    source: str | Path | None = None,
    stored_source: str | Path | None = None,
) -> PostProcessing:
    """The post-processing a predictor applies: ``requested`` (a :class:`PostProcessing` or its
    dict; an empty one turns a stored one off), else the ``stored`` one of the model card, else
    none; with class indices for ``class_names``."""
    if requested is not None:
        chosen = requested if isinstance(requested, PostProcessing) else (
            PostProcessing.from_dict(requested, source)
        )  # fmt: skip
        return chosen.for_classes(class_names, source)
    if stored:
        where = stored_source if stored_source is not None else source
        return PostProcessing.from_dict(stored, where).for_classes(class_names, where)
    return PostProcessing()


def from_flags(
    min_size: int | None = None,
    keep_largest: str | Sequence[int | str] | None = None,
    fill_holes: str | Sequence[int | str] | bool | None = None,
    no_postprocessing: bool = False,
) -> PostProcessing | None:
    """What the command-line options ask for: None (use the stored post-processing), an empty
    :class:`PostProcessing` (``--no-postprocessing``: none), or the steps given (they replace a
    stored post-processing as a whole)."""
    given = min_size is not None or keep_largest or fill_holes
    if no_postprocessing:
        if given:
            raise UnetlabError(
                "--no-postprocessing turns post-processing off; it cannot be combined with "
                "--min-size, --keep-largest or --fill-holes",
                hint="leave out one or the other",
            )
        return PostProcessing()
    if not given:
        return None
    return PostProcessing(min_size or 0, _as_list(keep_largest), _as_list(fill_holes))


# ---------------------------------------------------------------- the steps


def remove_small_regions(labels: np.ndarray, min_size: int) -> np.ndarray:
    """``labels`` with every region (of any class) smaller than ``min_size`` pixels removed."""
    from scipy import ndimage

    regions = np.zeros(labels.shape, np.int64)
    count = 0
    for label in np.unique(labels):
        components, found = ndimage.label(labels == label)
        sizes = np.bincount(components.ravel())
        small = sizes < min_size
        small[0] = False
        picked = small[components]
        regions[picked] = components[picked] + count
        count += found
    return relabel_removed(labels, regions)


def keep_largest_region(labels: np.ndarray, label: int) -> np.ndarray:
    """``labels`` with only the largest region of class ``label`` left (the first in row order
    among equals); its other regions are removed."""
    from scipy import ndimage

    components, found = ndimage.label(labels == label)
    if found < 2:
        return labels
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    regions = np.where(components == int(np.argmax(sizes)), 0, components)
    return relabel_removed(labels, regions)


def fill_holes(labels: np.ndarray, label: int) -> np.ndarray:
    """``labels`` with the background (0) pixels that class ``label`` encloses set to it."""
    from scipy import ndimage

    enclosed = ndimage.binary_fill_holes(labels == label) & (labels == 0)
    if not enclosed.any():
        return labels
    out = labels.copy()
    out[enclosed] = label
    return out


def relabel_removed(labels: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """``labels`` where each region ``r > 0`` of ``regions`` (0: pixels that stay) takes the
    label it shares the most pixel edges with among the pixels that stay (ties: the lower
    label; no such edge: 0)."""
    removed = regions > 0
    if not removed.any():
        return labels
    ids, region_index = np.unique(regions[removed], return_inverse=True)
    index = np.zeros(labels.shape, np.int64)
    index[removed] = region_index
    classes = int(labels.max()) + 1
    votes = np.zeros(len(ids) * classes, np.int64)
    for axis in (0, 1):
        a, b = _neighbours(labels.shape, axis)
        for inside, outside in ((a, b), (b, a)):
            edge = removed[inside] & ~removed[outside]
            keys = index[inside][edge] * classes + labels[outside][edge].astype(np.int64)
            votes += np.bincount(keys, minlength=len(votes))
    table = votes.reshape(len(ids), classes)
    choice = np.where(table.any(axis=1), table.argmax(axis=1), 0)  # argmax: lowest among ties
    out = labels.copy()
    out[removed] = choice[index[removed]].astype(labels.dtype)
    return out


def _neighbours(shape: tuple[int, ...], axis: int) -> tuple[tuple[slice, ...], ...]:
    """Two indexes whose pixels are next to each other along ``axis`` (the first one's
    pixel ``i`` touches the second one's pixel ``i``)."""
    first, second = [slice(None), slice(None)], [slice(None), slice(None)]
    first[axis], second[axis] = slice(0, shape[axis] - 1), slice(1, shape[axis])
    return tuple(first), tuple(second)


def _as_list(value: Any) -> ClassList:
    """A class list from ``"1,cell"``, ``"all"``, ``3``, ``[1, "cell"]`` or None; digits become
    indices."""
    if value is None or value == "" or value is False:
        return ()
    if value is True:
        return (ALL,)
    items = value.split(",") if isinstance(value, str) else (
        list(value) if isinstance(value, list | tuple) else [value]
    )  # fmt: skip
    result: list[int | str] = []
    for item in items:
        if isinstance(item, bool):
            raise UnetlabError(f"{item!r} is not a class (a name or an index)")
        if isinstance(item, int | np.integer):
            result.append(int(item))
            continue
        text = str(item).strip()
        if text:
            result.append(int(text) if text.lstrip("-").isdigit() else text)
    return tuple(result)


def _class_indices(
    classes: ClassList, class_names: Sequence[str], source: str | Path | None, option: str
) -> tuple[int, ...]:
    names = [name.lower() for name in class_names]
    choices = f"use class names ({', '.join(class_names)}), indices 0..{len(names) - 1} or 'all'"
    found: list[int] = []
    for item in classes:
        if isinstance(item, str) and item.lower() == ALL:
            found += range(1, len(names))
        elif isinstance(item, int):
            if not 0 <= item < len(names):
                raise UnetlabError(
                    f"{option}: class {item} does not exist (classes 0..{len(names) - 1})",
                    source,
                    choices,
                )
            found.append(item)
        elif item.lower() in names:
            found.append(names.index(item.lower()))
        else:
            raise UnetlabError(f"{option}: no class named {item!r}", source, choices)
    return tuple(dict.fromkeys(found))  # in order, once each
