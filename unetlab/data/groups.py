"""Groups of samples that belong together: frames of one video sequence, slices of one stack.

A validation set drawn from the same sequence as the training frames scores what the model has
nearly seen (CamVid's official val split is one clip lying between training frames); new data
comes from new sequences. A group is read from the sample id: by default the id without its
trailing frame number (``0016E5_07959`` -> ``0016E5``, ``stack2-slice014`` -> ``stack2-slice``),
or the first match of a user's regular expression.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from unetlab.errors import UnetlabError

AUTO = "auto"
_TRAILING_NUMBER = re.compile(r"[\s_.\-]*\d+$")


def group_of(sample_id: str, pattern: str = AUTO) -> str:
    """The group ``sample_id`` belongs to under ``pattern`` (``auto`` or a regular expression
    whose first group, or whole match, is the key; an id it does not match is its own group)."""
    if pattern == AUTO:
        return _TRAILING_NUMBER.sub("", sample_id) or sample_id
    match = _compile(pattern).search(sample_id)
    if match is None:
        return sample_id
    return match.group(1) if match.groups() else match.group(0)


def group_ids(ids: Iterable[str], pattern: str = AUTO) -> dict[str, list[str]]:
    """Ids by group, groups and ids in first-seen order."""
    groups: dict[str, list[str]] = {}
    for sample_id in ids:
        groups.setdefault(group_of(sample_id, pattern), []).append(sample_id)
    return groups


def shared_groups(
    train_ids: Iterable[str], val_ids: Iterable[str], pattern: str = AUTO
) -> list[str]:
    """Groups with ids in both lists, when the ids form at least two groups (one group over
    everything says nothing: names like ``img_001`` all read as ``img``)."""
    train, val = group_ids(train_ids, pattern), group_ids(val_ids, pattern)
    if len(set(train) | set(val)) < 2:
        return []
    return sorted(set(train) & set(val))


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise UnetlabError(
            f"cannot read the group pattern {pattern!r}: {exc}",
            hint="a regular expression whose first group is the sequence, e.g. '^([^_]+)_'",
        ) from None
