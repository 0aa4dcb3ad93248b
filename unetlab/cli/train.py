"""``unetlab train`` and ``unetlab demo``: thin layers over :func:`unetlab.engine.trainer.train`."""

from __future__ import annotations

from pathlib import Path

import click

from unetlab.api import DEFAULT_BUDGET
from unetlab.cli.options import device_option, threads_option

EXIT_INTERRUPTED = 130


@click.command(context_settings={"show_default": True})
@click.argument("config", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--data", "data_root", help="Dataset folder (images/ + masks/, or VOC layout).")
@click.option("--model", help="Architecture name (see 'unetlab summary').")
@click.option("--preset", help="Start from a preset: isbi2012, camvid or demo.")
@click.option("--epochs", type=int, help="Number of epochs (train.epochs).")
@click.option("--batch-size", type=int, help="Images per step and process (data.batch_size).")
@click.option("--device", help="auto, cpu, cuda or cuda:N (train.device).")
@click.option("--name", help="Run name: the folder runs/NAME.")
@click.option("--out-dir", help="Parent folder of the run folders (default runs).")
@click.option(
    "--resume",
    type=click.Path(exists=True, path_type=Path),
    help="Continue the run in this folder exactly where it stopped.",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override any config field, e.g. --set optim.lr=0.01 (repeatable; YAML values).",
)
@click.option(
    "--budget",
    help="Train for this long (20m, 1.5h, 90s). With --data alone (no CONFIG, no --preset) "
    "unetlab first plans the run for this dataset, this machine and this budget; --data with "
    f"nothing else (no --budget, --model, --epochs, --batch-size or --set) plans {DEFAULT_BUDGET}.",
)
@click.option(
    "--orientation", type=click.Choice(["auto", "free", "upright"]), default="auto",
    help="For planning: do images have a canonical up? (see 'unetlab plan --help')",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Check everything training would (dataset, classes, channels, model options, patch "
    "size, weights), print the resolved configuration and exit (exit 2 on a problem).",
)
@threads_option
def train(
    config: Path | None,
    data_root: str | None,
    model: str | None,
    preset: str | None,
    epochs: int | None,
    batch_size: int | None,
    device: str | None,
    name: str | None,
    out_dir: str | None,
    resume: Path | None,
    overrides: tuple[str, ...],
    budget: str | None,
    orientation: str,
    dry_run: bool,
    threads: int | None,
) -> int:
    """Train a U-Net: CONFIG.yaml and/or options; every field can be overridden with --set.

    \b
    Examples:
      unetlab train --data ../shared/datasets/weizmann_horse --budget 20m   (planned)
      unetlab train --data ../shared/datasets/weizmann_horse   (planned, 20 minutes)
      unetlab train --preset isbi2012 --data ../shared/datasets/isbi2012
      unetlab train examples/config.yaml --set optim.lr=3e-4 --set data.batch_size=8
      unetlab train --preset camvid --model resnet50_unet --data DATA --dry-run
      unetlab train --resume runs/isbi2012-unet
      torchrun --nproc_per_node=4 -m unetlab.cli.main train my_run.yaml   (4 GPUs)
      unetlab train runs/NAME/config.yaml   (the same run again, from any folder)
    """
    from unetlab.api import training_config
    from unetlab.engine.trainer import train as run_training
    from unetlab.threads import configure_threads

    configure_threads(threads)  # again, now torch is loaded (see unetlab.threads)

    cfg, extra_files = training_config(
        config, orientation=orientation, log=click.echo, preset=preset, data=data_root,
        model=model, epochs=epochs, batch_size=batch_size, device=device, name=name,
        out_dir=out_dir, overrides=overrides, resume=resume, budget=budget,
    )  # fmt: skip
    if dry_run:
        import yaml

        from unetlab.engine.dryrun import plan_run

        plan = plan_run(cfg, resume=resume)
        comments = "".join(f"# {line}\n" for line in plan.summary().splitlines())
        click.echo(comments + yaml.safe_dump(plan.config.to_dict(), sort_keys=False), nl=False)
        return 0
    result = run_training(cfg, resume=resume, extra_files=extra_files)
    return EXIT_INTERRUPTED if result.stopped == "interrupted" else 0


@click.command(context_settings={"show_default": True})
@click.option(
    "--out",
    default="unetlab-demo",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the synthetic data and the run.",
)
@click.option("--minutes", default=0.75, type=float, help="Training time budget.")
@device_option()
@threads_option
def demo(out: Path, minutes: float, device: str, threads: int | None) -> int:
    """Make a synthetic shapes dataset, train a small U-Net on it, evaluate and predict."""
    from unetlab.engine.demo import run_demo
    from unetlab.threads import configure_threads

    configure_threads(threads)  # again, now torch is loaded (see unetlab.threads)

    summary = run_demo(out, minutes=minutes, device=device)
    click.echo(summary.text)
    return EXIT_INTERRUPTED if summary.result.stopped == "interrupted" else 0
