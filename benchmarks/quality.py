"""Quality under a fixed wall-clock budget: plan (or take a preset), train N minutes, score on val.

    python benchmarks/quality.py --plan --data ../shared/datasets/isbi2012 --minutes 20
    python benchmarks/quality.py --plan --data DATASET --minutes 20 --against-baseline
    python benchmarks/quality.py --preset camvid --data ../shared/datasets/camvid --minutes 60
    python benchmarks/quality.py --plan --data DIR --minutes 5 --set loss.name=ce_dice --tag cedice

``--plan`` does what ``unetlab train --data DIR --budget Nm`` does: fingerprint, probe, plan
(the planning time is taken from the budget), then train; ``--preset`` trains a preset with the
clock as its only limit. ``--set`` overrides any field of the resulting config (the ablation
rows). The budget is the wall-clock time of planning, training and validation; the learning
rate schedule follows the clock, so a run ends annealed. The last and the best (by val mIoU,
chosen on val: optimistic) checkpoints are scored on val by ``scoring.score_split``, the code
that scores the plain baseline too. ``--against-baseline`` first runs ``baseline.py`` at the same
budget on the same data (one after the other, never side by side), and records both.
Writes a JSON record (metrics, plan reasons, config, command, machine, load) and prints it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import platform_info
from scoring import score_split

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    recipe = parser.add_mutually_exclusive_group(required=True)
    recipe.add_argument("--plan", action="store_true", help="plan for the data and budget")
    recipe.add_argument("--preset", help="isbi2012, camvid or demo")
    parser.add_argument("--data", required=True, help="dataset folder")
    parser.add_argument("--minutes", type=float, required=True, help="time budget")
    parser.add_argument("--orientation", default="auto", choices=["auto", "free", "upright"])
    parser.add_argument("--out", default="benchmarks/results", help="folder for the JSON record")
    parser.add_argument("--runs", default="runs/benchmarks", help="folder for the run folders")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tag", default="", help="suffix of the record's name, e.g. cedice")
    parser.add_argument("--against-baseline", action="store_true",
                        help="run benchmarks/baseline.py first at the same budget")
    parser.add_argument("--train-split", default="train",
                        help="split name, or a path to a .txt id list (e.g. benchmarks/splits/)")
    parser.add_argument("--val-split", default="val",
                        help="split to validate and score on; other sequences than training")
    parser.add_argument("--score-run", metavar="RUN",
                        help="only score an existing run folder of this recipe (a run whose "
                        "scoring was interrupted); its load during training is not known")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="config override (repeatable)")
    args = parser.parse_args(argv)
    dataset = Path(args.data).resolve().name
    recipe_name = "plan" if args.plan else args.preset
    name = f"quality-{dataset}-{recipe_name}-{args.minutes:g}min" + (
        f"-{args.tag}" if args.tag else "")

    baseline = None
    if args.score_run:
        return score_run(args, name)
    if args.against_baseline:
        command = [sys.executable, str(HERE / "baseline.py"), "--data", args.data, "--minutes",
                   str(args.minutes), "--seed", str(args.seed), "--out", args.out,
                   "--train-split", args.train_split, "--val-split", args.val_split,
                   "--tag", args.tag]
        subprocess.run(command, check=True)
        baseline_path = Path(args.out) / (f"baseline-{dataset}-{args.minutes:g}min"
                                          + (f"-{args.tag}" if args.tag else "") + ".json")
        baseline = {"record": str(baseline_path)}

    from unetlab.engine.config import UNTIL_THE_CLOCK, load_config
    from unetlab.engine.trainer import train

    run_name = name.removeprefix("quality-") + time.strftime("-%m%d-%H%M")
    load_before = platform_info.load_average()
    started = time.time()
    plan_reasons = None
    if args.plan:
        from unetlab.plan import parse_budget, plan_dataset

        made = plan_dataset(args.data, parse_budget(args.minutes), device=args.device,
                            orientation=args.orientation, train_split=args.train_split,
                            val_split=args.val_split)
        plan_reasons = made.reasons
        cfg = load_config(made.config, options={"name": run_name, "out_dir": args.runs,
                                                "train": {"seed": args.seed}},
                          overrides=args.overrides)
    else:
        cfg = load_config(
            preset=args.preset,
            options={
                "data": {"root": args.data, "train_split": args.train_split,
                         "val_split": args.val_split},
                "name": run_name, "out_dir": args.runs,
                "train": {"epochs": UNTIL_THE_CLOCK, "time_limit_minutes": args.minutes,
                          "device": args.device, "seed": args.seed},
            },
            overrides=args.overrides,
        )
    result = train(cfg)
    wall = time.time() - started
    record: dict[str, Any] = {
        **record_head(args, result.run_dir, argv),
        "stopped": result.stopped,
        "epochs": result.epochs,
        "steps": result.global_step,
        "wall_seconds_plan_train_validate": round(wall, 1),
        "plan_reasons": plan_reasons,
        "config": cfg.to_dict(),
    }
    record.update(score_checkpoints(cfg, result.last_checkpoint, result.best_checkpoint, args))
    record.update(platform_info.record(load_before))
    if baseline is not None:
        record["baseline"] = baseline
    return platform_info.write_record(record, args.out, name)


def record_head(
    args: argparse.Namespace, run_dir: Path, argv: list[str] | None = None
) -> dict[str, Any]:
    """What every record opens with: the command, the recipe, the data and the run."""
    return {
        "command": "python benchmarks/quality.py " + " ".join(argv or sys.argv[1:]),
        "recipe": "plan" if args.plan else args.preset,
        "data": str(Path(args.data).resolve()),
        "budget_minutes": args.minutes,
        "overrides": args.overrides,
        "seed": args.seed,
        "train_split": args.train_split,
        "val_split": args.val_split,
        "run_dir": str(run_dir),
    }


def score_checkpoints(
    cfg: Any, last: Path, best: Path | None, args: argparse.Namespace
) -> dict[str, Any]:
    """``val_last``, ``val_best`` and ``val_last_tta`` (the last checkpoint averaged over the
    symmetries the training augmented with) of a run, on the val split."""
    classes = int(cfg.data.num_classes or 0) or None
    scores: dict[str, Any] = {}
    for label, checkpoint in (("last", last), ("best", best)):
        if checkpoint is not None:
            scores[f"val_{label}"] = score_checkpoint(checkpoint, args.data, classes,
                                                      split=args.val_split)
    augment = cfg.data.augment
    tta = "flips+rot90" if augment.rotate90 else "flips" if augment.vflip else "hflip"
    scores["val_last_tta"] = {
        "tta": tta, **score_checkpoint(last, args.data, classes, tta=tta, split=args.val_split)
    }
    return scores


def score_run(args: argparse.Namespace, name: str) -> dict[str, Any]:
    """The record of an existing run folder, scored as a finished run is."""
    from unetlab.artifacts.checkpoint import load_checkpoint
    from unetlab.engine.config import load_config

    run = Path(args.score_run).resolve()
    cfg = load_config(run / "config.yaml")
    last, best = run / "checkpoints" / "last.pt", run / "checkpoints" / "best.pt"
    state = load_checkpoint(last)
    load_before = platform_info.load_average()
    record: dict[str, Any] = {
        **record_head(args, run),
        "scored_afterwards": "the run's own scoring was interrupted; load during training "
                             "not recorded",
        "epochs": int(state["epoch"]),
        "steps": int(state["global_step"]),
        "plan_reasons": None,
        "config": cfg.to_dict(),
    }
    record.update(score_checkpoints(cfg, last, best, args))
    record.update(platform_info.record(load_before))
    return platform_info.write_record(record, args.out, name)


def score_checkpoint(
    checkpoint: Path, data: str, num_classes: int | None, tta: str | bool = False,
    split: str = "val",
) -> dict[str, Any]:
    """Whole-image labels from the checkpoint (the predict path), scored on ``split``."""
    from unetlab.artifacts.checkpoint import load_checkpoint
    from unetlab.inference import Predictor

    predictor = Predictor.from_checkpoint(checkpoint, tile=4096, progress=False, tta=tta)
    classes = num_classes or len(predictor.class_names)
    scores = score_split(data, split, lambda image: predictor.predict(image).labels, classes)
    return {"epoch": int(load_checkpoint(checkpoint)["epoch"]), **scores}


if __name__ == "__main__":
    main()
