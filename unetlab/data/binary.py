"""Is 255 an object or 'ignore'? One rule for ``data check``, ``evaluate`` and ``fix-binary``.

A mask holding only 0 and 255 is either a binary mask saved as 0/255 (255 = the object, which
unetlab would ignore) or an object-less mask of an index dataset with an ignore band (255 =
ignore, as in VOC). Calling the second kind "0/255 binary" and recommending ``fix-binary``
would turn the ignore band into class 1: the tool's own advice would corrupt the data. The
dataset decides: 255 is the ignore label when there are more than two classes, when any mask
holds two or more object classes (a multi-class mask), or when any mask holds an object class
together with 255. (A lone other value, a 0/128 mask, is a binary mask in another encoding,
not evidence of classes.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from unetlab import IGNORE_INDEX


def is_zero_255(values: Iterable[int]) -> bool:
    """Exactly the values 0 and 255 (an all-255 or all-0 mask is no evidence of either)."""
    return set(values) == {0, IGNORE_INDEX}


def zero_255_means_binary(value_sets: Iterable[Iterable[int]], num_classes: int | None) -> bool:
    """Whether the 0/255 masks of a dataset whose masks hold ``value_sets`` are binary masks
    (see module doc); False as soon as anything shows 255 is the ignore label."""
    if num_classes is not None and num_classes > 2:
        return False
    for values in value_sets:
        values = set(values)
        classes = values - {0, IGNORE_INDEX}
        if len(classes) >= 2 or (classes and IGNORE_INDEX in values):
            return False
    return True


def truth_looks_0_255(num_classes: int, truth_pixels: Sequence[int], ignored_pixels: int) -> bool:
    """``evaluate`` of a two-class model: every scored truth pixel is 0 and some are 255, so the
    masks hold 0 and 255 only (all-255 masks are not this: they are all ignored)."""
    return (
        num_classes == 2
        and ignored_pixels > 0
        and truth_pixels[0] > 0
        and not any(truth_pixels[1:])
    )
