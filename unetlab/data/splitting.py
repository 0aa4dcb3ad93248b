"""Train/val/test (or k-fold) id lists from a set of ids: the one splitting rule.

Used by ``unetlab data split`` (:func:`unetlab.data.convert.make_splits`, which writes the
lists) and by the automatic split of a dataset that has no lists (``auto-train`` /
``auto-val``, :func:`automatic_split`), so both hold images out the same way: shuffled with a
fixed seed, and whole groups (video sequences, stacks) when asked, since a val set of frames
from the training sequences flatters the model (:mod:`unetlab.data.groups`).
"""

from __future__ import annotations

import random
from pathlib import Path

from unetlab.data.groups import AUTO, group_ids
from unetlab.errors import UnetlabError

AUTO_TRAIN, AUTO_VAL = "auto-train", "auto-val"
"""Split names that need no list on disk: :func:`automatic_split` of the labelled images."""
AUTO_VAL_FRACTION = 0.1


def split_ids(
    ids: list[str],
    val_fraction: float = 0.1,
    seed: int = 0,
    *,
    test_fraction: float = 0.0,
    folds: int = 0,
    group: str | None = None,
    root: str | Path | None = None,
) -> dict[str, list[str]]:
    """The lists :func:`~unetlab.data.convert.make_splits` documents, by name, each sorted
    (``root`` only names the dataset in errors)."""
    for what, fraction in (("val", val_fraction), ("test", test_fraction)):
        if not 0.0 <= fraction < 1.0:
            raise UnetlabError(
                f"{what} fraction must be in [0, 1), got {fraction}", hint="e.g. 0.1 for 10%"
            )
    if folds == 1 or folds < 0:
        raise UnetlabError(f"folds must be 0 (no folds) or at least 2, got {folds}")
    units = _units(sorted(ids), group, seed, root)
    test, rest_units = _take(units, _held_out(len(ids), test_fraction))
    rest = [i for unit in rest_units for i in unit]
    splits: dict[str, list[str]] = {}
    if folds:
        if len(rest_units) < folds:
            raise UnetlabError(
                f"{len(rest_units)} labelled {'group' if group else 'image'}(s) outside the "
                f"test split: too few for {folds} folds",
                root,
                "use fewer folds (--folds) or a smaller --test",
            )
        parts = _deal(rest_units, folds)
        for index, part in enumerate(parts):
            held = set(part)
            splits[f"fold{index}_train"] = sorted(i for i in rest if i not in held)
            splits[f"fold{index}_val"] = sorted(part)
        splits = {"train": splits["fold0_train"], "val": splits["fold0_val"], **splits}
    else:
        n_val = _held_out(len(ids), val_fraction)
        if n_val and len(rest_units) < 2:
            raise UnetlabError(
                f"only {len(rest_units)} labelled {'group' if group else 'image'}(s) outside "
                "the test split: too few to hold some out for validation",
                root,
                "add images, or use --val 0 to put everything in train"
                + (", or a --group pattern that finds more groups" if group else ""),
            )
        val, train_units = _take(rest_units, n_val, keep=1)
        splits = {"train": sorted(i for unit in train_units for i in unit), "val": sorted(val)}
    if test_fraction > 0:
        if not rest:
            raise UnetlabError(
                f"only {len(ids)} labelled image(s): too few to hold some out for testing",
                root,
                "add images, or leave out --test",
            )
        splits["test"] = sorted(test)
    return splits


def automatic_split(ids: list[str], root: str | Path | None = None) -> dict[str, list[str]]:
    """``auto-train`` and ``auto-val`` of ``ids``: ``AUTO_VAL_FRACTION`` held out with seed 0,
    as whole sequences when the names show at least three (``0016E5_07959``: sequence
    ``0016E5``), else as single images. A pure function of the ids: the same files give the
    same split in every command (train, evaluate, resume)."""
    if len(ids) < 2:
        raise UnetlabError(
            f"{len(ids)} labelled image(s): too few to hold one out for validation",
            root,
            "add images, or train and validate on the same images: --set data.val_split=all",
        )
    grouped = len(group_ids(ids, AUTO)) >= 3
    splits = split_ids(ids, AUTO_VAL_FRACTION, 0, group=AUTO if grouped else None, root=root)
    return {AUTO_TRAIN: splits["train"], AUTO_VAL: splits["val"]}


def _units(
    ids: list[str], group: str | None, seed: int, root: str | Path | None
) -> list[list[str]]:
    """The shuffled units a split deals out: single ids, or whole groups."""
    if not group:
        shuffled = list(ids)
        random.Random(seed).shuffle(shuffled)
        return [[i] for i in shuffled]
    groups = list(group_ids(ids, group).values())
    if len(groups) < 2:
        raise UnetlabError(
            f"the group pattern {group!r} puts all {len(ids)} labelled images in one group",
            root,
            "pass a regular expression whose first group is the sequence, e.g. "
            "--group '^([^_]+)_', or split without --group",
        )
    random.Random(seed).shuffle(groups)
    return groups


def _take(units: list[list[str]], count: int, keep: int = 0) -> tuple[list[str], list[list[str]]]:
    """Ids of the first units that bring the total closest to ``count`` (at least one unit when
    ``count`` > 0, at least ``keep`` units left), and the units left."""
    taken: list[str] = []
    left: list[list[str]] = []
    for index, unit in enumerate(units):
        left_after = len(left) + len(units) - index - 1
        closer = abs(len(taken) + len(unit) - count) < abs(len(taken) - count)
        if count and left_after >= keep and closer:
            taken += unit
        else:
            left.append(unit)
    if count and not taken and len(left) > keep:
        smallest = min(left, key=len)
        left.remove(smallest)
        taken = list(smallest)
    return taken, left


def _deal(units: list[list[str]], folds: int) -> list[list[str]]:
    """``folds`` parts of about equal size: single ids in turn, groups largest first onto the
    smallest part."""
    if all(len(unit) == 1 for unit in units):
        flat = [unit[0] for unit in units]
        return [flat[index::folds] for index in range(folds)]
    parts: list[list[str]] = [[] for _ in range(folds)]
    for unit in sorted(units, key=len, reverse=True):
        min(parts, key=len).extend(unit)
    return parts


def _held_out(count: int, fraction: float) -> int:
    """How many of ``count`` ids a fraction holds out: rounded, at least one when above 0."""
    return max(1, round(count * fraction)) if fraction > 0 else 0


