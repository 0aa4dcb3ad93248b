"""Region scores of binary tasks: pixel error and adapted Rand error, per image then averaged.

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

from collections.abc import Sequence
from typing import Any

import numpy as np

from unetlab.errors import UnetlabError
from unetlab.metrics.scores import nanmean

BOUNDARY_CLASS_NAMES = ("membrane", "boundary", "border", "edge", "contour")
"""Class names taken as the boundary class for the Rand error when none is given."""


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


class RegionScores:
    """Per-image pixel error and adapted Rand error of a two-class task, then their means.

    The per-image numbers are those of :func:`unetlab.metrics.per_image.image_row` with this
    boundary class (the one definition, shared with the per-image table).
    """

    KEYS = ("pixel_error", "adapted_rand_error", "rand_precision", "rand_recall")

    def __init__(self, boundary_class: int, class_names: Sequence[str]):
        self.boundary_class = boundary_class
        self.class_names = list(class_names)
        self.rows: list[dict[str, Any]] = []

    def add(self, row: dict[str, Any]) -> None:
        """Keep the region scores of one image's row (scored with :attr:`boundary_class`)."""
        self.rows.append({"id": row["id"], **{key: row[key] for key in self.KEYS}})

    def summary(self) -> dict[str, Any]:
        keys = self.KEYS
        return {
            "boundary_class": self.boundary_class,
            "boundary_class_name": self.class_names[self.boundary_class],
            "averaged_over": "images",
            **{key: nanmean(np.array([row[key] for row in self.rows], float)) for key in keys},
            "per_image": self.rows,
        }
