"""``unetlab demo``: the whole path on synthetic data, in about a minute on a laptop CPU.

Makes the shapes dataset (:func:`unetlab.data.make_shapes_dataset`), trains the ``demo``
preset under a time budget, evaluates the best checkpoint on the validation split (report,
confusion matrix, panels) and returns a summary that says where everything is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unetlab.engine.trainer import RunResult

CHANCE_MIOU = 0.7  # the demo is expected to land clearly above this on the shapes val split


@dataclass
class DemoSummary:
    result: RunResult
    report: Any  # unetlab.engine.evaluate.EvaluationReport (None when interrupted)
    data_root: Path
    text: str


def run_demo(
    out: str | Path = "unetlab-demo",
    minutes: float = 0.75,
    device: str = "auto",
    overrides: tuple[str, ...] = (),
) -> DemoSummary:
    """Data -> training (``minutes`` budget) -> evaluation; see the module docstring."""
    from unetlab.data import make_shapes_dataset
    from unetlab.engine.config import load_config
    from unetlab.engine.evaluate import evaluate
    from unetlab.engine.trainer import train

    out = Path(out)
    data_root = out / "shapes"
    if not (data_root / "splits" / "val.txt").is_file():
        print(f"making the synthetic shapes dataset in {data_root} ...", flush=True)
        make_shapes_dataset(data_root)
    cfg = load_config(
        preset="demo",
        options={
            "data": {"root": str(data_root)},
            "out_dir": str(out / "runs"),
            "train": {"time_limit_minutes": minutes, "device": device},
        },
        overrides=overrides,
    )
    result = train(cfg)
    if result.stopped == "interrupted" or result.best_checkpoint is None:
        return DemoSummary(result, None, data_root, f"demo stopped; {result.resume_command}")
    report = evaluate(result.best_checkpoint, data_root, split="val", device=device)
    miou = report.scores["miou"]
    verdict = (
        "well above chance"
        if miou > CHANCE_MIOU
        else f"below the expected {CHANCE_MIOU} (a slow or busy machine? try --minutes 3)"
    )
    lines = [
        "",
        f"demo finished: val mIoU {miou:.3f} ({verdict}), pixel accuracy "
        f"{report.scores['pixel_accuracy']:.3f}, {result.epochs} epochs",
        f"  data:         {data_root}",
        f"  run folder:   {result.run_dir}",
        f"  checkpoint:   {result.best_checkpoint}",
        f"  curves:       {result.run_dir / 'plots'}",
        f"  predictions:  {result.run_dir / 'predictions'}",
        f"  evaluation:   {report.out_dir} (report.json, confusion_matrix.png, panels/)",
        "next: unetlab predict "
        f"{result.run_dir} {data_root / 'images'} --out {out / 'predicted'}",
    ]
    return DemoSummary(result, report, data_root, "\n".join(lines))
