"""``unetlab plan``: a run configuration for this dataset, this machine and this budget."""

from __future__ import annotations

from pathlib import Path

import click

from unetlab.cli.options import device_option

ORIENTATION_HELP = (
    "Whether images have a canonical up: free (microscopy, aerial: vertical flips and "
    "rotations) or upright (photographs, streets). auto: free for one-channel images, "
    "upright for colour."
)


@click.command(context_settings={"show_default": True})
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--budget", default="20m", help="Training time: 20m, 1.5h, 90s (minutes if bare).")
@device_option()
@click.option(
    "--orientation", type=click.Choice(["auto", "free", "upright"]), default="auto",
    help=ORIENTATION_HELP,
)
@click.option(
    "--out", default="plan.yaml", type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the plan (never replaces an existing file).",
)
@click.option(
    "--train-split", default="train",
    help="Split to train on: a name, or a path to a .txt id list.",
)
@click.option(
    "--val-split", default="val",
    help="Split to validate on: ideally other sequences than training "
    "('unetlab data split DATASET --group auto --out lists/').",
)
def plan(
    dataset: Path, budget: str, device: str, orientation: str, out: Path, train_split: str,
    val_split: str,
) -> int:
    """Fingerprint DATASET, time candidate networks here, and write a plan to train.

    \b
    Example:
      unetlab plan ../shared/datasets/isbi2012 --budget 20m --out isbi.yaml
      unetlab train isbi.yaml
    """
    from unetlab.plan import parse_budget, plan_dataset, write_plan

    seconds = parse_budget(budget)
    made = plan_dataset(dataset, seconds, device=device, orientation=orientation,  # type: ignore[arg-type]
                        train_split=train_split, val_split=val_split, log=click.echo,
                        trains_now=False)
    path = write_plan(made, out)
    click.echo(f"plan written: {path} (about {made.predicted_steps} steps)\n"
               f"train it with: unetlab train {path}")
    return 0
