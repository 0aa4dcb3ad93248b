"""Print the ablation and target tables of docs/benchmarks.md from the JSON quality records.

    python benchmarks/ablation_table.py benchmarks/results/quality-isbi2012-plan-5min-*.json \
        benchmarks/results/baseline-isbi2012-5min-screen.json

One row per record: what was changed (``--set`` overrides, or "plain baseline"), the steps the
budget held, the load of other processes, and the val scores of the last checkpoint (and of the
best one, picked on val, in brackets where it differs).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

COLUMNS = {
    "miou": ("mIoU", 100.0),
    "foreground_iou": ("fg IoU", 100.0),
    "foreground_dice": ("fg Dice", 100.0),
    "pixel_error": ("pixel error", 1.0),
    "adapted_rand_error": ("Rand error", 1.0),
}


def describe(record: dict[str, Any]) -> str:
    if record.get("recipe", "").startswith("plain baseline"):
        return "plain baseline (`baseline.py`)"
    changes = record.get("overrides") or []
    name = "plan" if record.get("recipe") == "plan" else f"preset {record.get('recipe')}"
    return name + (" + " + ", ".join(f"`{c}`" for c in changes) if changes else "")


def cell(record: dict[str, Any], key: str, scale: float) -> str:
    last = (record.get("val_last") or {}).get(key)
    best = (record.get("val_best") or {}).get(key)
    if last is None:
        return "-"
    digits = 1 if scale == 100.0 else 3
    text = f"{last * scale:.{digits}f}"
    if best is not None and abs(best - last) * scale >= 10 ** -digits:
        text += f" ({best * scale:.{digits}f})"
    return text


def tta_cell(record: dict[str, Any], keys: list[str]) -> str:
    """The last checkpoint with test-time augmentation: its mode and the same scores."""
    scores = record.get("val_last_tta")
    if not scores:
        return "-"
    parts = []
    for key in keys:
        scale = COLUMNS[key][1]
        if scores.get(key) is not None:
            digits = 1 if scale == 100.0 else 3
            parts.append(f"{scores[key] * scale:.{digits}f}")
    return f"{scores['tta']}: " + " / ".join(parts)


def table(records: list[dict[str, Any]]) -> str:
    keys = [k for k in COLUMNS if any(k in (r.get("val_last") or {}) for r in records)]
    header = ["data", "min", "recipe", "seed", "steps", "other load",
              *(COLUMNS[k][0] for k in keys), "with TTA (same columns)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for record in records:
        row = [Path(record.get("data", "?")).name, f"{record.get('budget_minutes', 0):g}",
               describe(record), str(record.get("seed", 0)), str(record.get("steps", "-")),
               f"{record.get('other_processes_cores', float('nan')):.2f}",
               *(cell(record, k, COLUMNS[k][1]) for k in keys), tta_cell(record, keys)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", nargs="+", type=Path)
    args = parser.parse_args(argv)
    print(table([json.loads(path.read_text()) for path in args.records]))


if __name__ == "__main__":
    main()
