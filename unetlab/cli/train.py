"""``unetlab train`` and ``unetlab demo``: thin layers over :func:`unetlab.engine.trainer.train`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from unetlab.errors import UnetlabError

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
    "unetlab first plans the run for this dataset, this machine and this budget.",
)
@click.option(
    "--orientation", type=click.Choice(["auto", "free", "upright"]), default="auto",
    help="For planning: do images have a canonical up? (see 'unetlab plan --help')",
)
@click.option("--dry-run", is_flag=True, help="Print the resolved configuration and exit.")
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
) -> int:
    """Train a U-Net: CONFIG.yaml and/or options; every field can be overridden with --set.

    \b
    Examples:
      unetlab train --data ../shared/datasets/weizmann_horse --budget 20m   (planned)
      unetlab train --preset isbi2012 --data ../shared/datasets/isbi2012
      unetlab train my_run.yaml --set optim.lr=3e-4 --set data.batch_size=8
      unetlab train --resume runs/isbi2012-unet
      torchrun --nproc_per_node=4 -m unetlab.cli.main train my_run.yaml   (4 GPUs)
    """
    from unetlab.engine.config import load_config
    from unetlab.engine.trainer import run_dir_of
    from unetlab.engine.trainer import train as run_training

    options = _options(data_root, model, epochs, batch_size, device, name, out_dir)
    if resume is not None:
        if config is not None or preset is not None:
            raise UnetlabError(
                "--resume continues a run with its own config.yaml; it cannot be combined "
                "with a CONFIG file or --preset",
                resume,
                "leave out CONFIG/--preset (use --set or --epochs to change fields)",
            )
        config = run_dir_of(resume) / "config.yaml"
    extra_files: dict[str, str] = {}
    source: Path | dict[str, Any] | None = config
    if budget is not None:
        from unetlab.plan import parse_budget

        seconds = parse_budget(budget)
        if config is None and preset is None and resume is None:
            source, extra_files = _planned(data_root, seconds, device, orientation)
        else:
            options.setdefault("train", {})["time_limit_minutes"] = seconds / 60.0
            options["train"].setdefault("epochs", 100_000)  # the clock ends the run
    cfg = load_config(source, preset=preset, options=options, overrides=overrides)
    if dry_run:
        import yaml

        click.echo(yaml.safe_dump(cfg.to_dict(), sort_keys=False), nl=False)
        return 0
    result = run_training(cfg, resume=resume, extra_files=extra_files)
    return EXIT_INTERRUPTED if result.stopped == "interrupted" else 0


def _planned(
    data_root: str | None, seconds: float, device: str | None, orientation: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """Plan the run (its config, and plan.yaml with the reasons for the run folder)."""
    from unetlab.plan import plan_dataset, plan_to_yaml

    if data_root is None:
        raise UnetlabError(
            "--budget without a config or preset plans a run for a dataset: pass --data DIR",
            hint="e.g. unetlab train --data ../shared/datasets/isbi2012 --budget 20m",
        )
    made = plan_dataset(
        data_root, seconds, device=device or "auto", orientation=orientation,  # type: ignore[arg-type]
        log=click.echo,
    )
    text = plan_to_yaml(made)
    click.echo(text)
    return made.config, {"plan.yaml": text}


def _options(
    data_root: str | None,
    model: str | None,
    epochs: int | None,
    batch_size: int | None,
    device: str | None,
    name: str | None,
    out_dir: str | None,
) -> dict[str, Any]:
    """The command-line options as a nested config dict (only those given)."""
    values = {
        ("data", "root"): data_root,
        ("model", "name"): model,
        ("train", "epochs"): epochs,
        ("data", "batch_size"): batch_size,
        ("train", "device"): device,
        ("name",): name,
        ("out_dir",): out_dir,
    }
    nested: dict[str, Any] = {}
    for path, value in values.items():
        if value is None:
            continue
        node = nested
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return nested


def _quiet_cpu_threads() -> None:
    """Let idle OpenMP threads sleep instead of spinning (unless the user chose otherwise).

    On a small, busy CPU (a laptop, a shared CI runner) spinning threads fight the other
    processes for the cores: measured on 2 shared cores, a demo-sized U-Net step ran 2-4x
    slower with the default. Only effective before torch is first imported.
    """
    import os
    import sys

    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@click.command(context_settings={"show_default": True})
@click.option(
    "--out",
    default="unetlab-demo",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the synthetic data and the run.",
)
@click.option("--minutes", default=0.75, type=float, help="Training time budget.")
@click.option("--device", default="auto", help="auto, cpu, cuda or cuda:N.")
def demo(out: Path, minutes: float, device: str) -> int:
    """Make a synthetic shapes dataset, train a small U-Net on it, evaluate and predict."""
    _quiet_cpu_threads()
    from unetlab.engine.demo import run_demo

    summary = run_demo(out, minutes=minutes, device=device)
    click.echo(summary.text)
    return EXIT_INTERRUPTED if summary.result.stopped == "interrupted" else 0
