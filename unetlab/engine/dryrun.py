"""``unetlab train --dry-run``: every check a run makes before its first step, and nothing else.

:func:`plan_run` goes through the trainer's start-up with the same functions, in the same order
(dataset found and checked, classes, channels and normalisation read from it, model built with
its options and initial weights, patch size legal for it, encoder freezing, loss, optimizer,
device and precision, one full batch per epoch) but trains nothing and writes nothing. A
config that passes it fails in training only on what depends on running (memory, a diverging
loss); one that does not fails here with the error training would give.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unetlab.engine.config import RunConfig, load_config
from unetlab.errors import UnetlabError


@dataclass
class RunPlan:
    """What ``train`` would do with a config: the resolved config as ``RUN/config.yaml`` would
    store it, the run folder it would write, and what it read from the data and the model."""

    config: RunConfig
    run_dir: Path
    train_images: int
    val_images: int
    parameters: int
    weight_reports: list[str] = field(default_factory=list)

    def summary(self) -> str:
        cfg = self.config
        lines = [
            f"run folder: {self.run_dir} (not created by a dry run)",
            f"data: {cfg.data.root}: {self.train_images} {cfg.data.train_split} / "
            f"{self.val_images} {cfg.data.val_split} images, {cfg.data.num_classes} classes "
            f"({', '.join(cfg.data.class_names or [])}), {cfg.model.in_channels} channel(s)",
            f"model: {cfg.model.name} ({self.parameters / 1e6:.2f} M parameters), patch "
            f"{cfg.data.patch_hw[0]}x{cfg.data.patch_hw[1]} fits it",
            *self.weight_reports,
            *(f"note: {note}" for note in cfg.notes),
        ]
        return "\n".join(lines)


def plan_run(config: RunConfig | dict | str | Path, resume: str | Path | None = None) -> RunPlan:
    """Resolve and validate ``config`` as :func:`unetlab.engine.trainer.train` would.

    Raises:
        UnetlabError: the error training would stop with (missing dataset, bad masks, a patch
            size the model cannot take, unknown model options, unreadable weights ...).
    """
    from unetlab.data import check_dataset
    from unetlab.engine.builders import (
        amp_dtype,
        build_criterion,
        build_network,
        build_optimizer,
        check_patch_size,
        resolve_data,
    )
    from unetlab.engine.distributed import resolve_device
    from unetlab.engine.freeze import encoder_of
    from unetlab.engine.trainer import check_full_batch, located, new_run_dir, run_dir_of

    cfg = config if isinstance(config, RunConfig) else load_config(config)
    if cfg.data.root is None:
        raise UnetlabError(
            "no dataset given", hint="pass --data DIR or set data.root in the config"
        )
    run_dir = run_dir_of(resume) if resume is not None else new_run_dir(cfg, claim=False)
    report = check_dataset(
        cfg.data.root, cfg.data.num_classes, (cfg.data.train_split, cfg.data.val_split)
    )
    resolved, spec = resolve_data(cfg, report)
    resolved = located(resolved, run_dir)
    device = resolve_device(resolved.train.device)
    model = build_network(resolved, pretrained=resume is None)
    check_patch_size(model, resolved.data.patch_hw, resolved.model.name)
    if resolved.train.freeze_encoder_epochs:
        encoder_of(model, resolved.model.name)
    build_criterion(resolved, report, spec.num_classes)
    build_optimizer(resolved, model)
    amp_dtype(resolved.train.amp, device)
    train_ids = report.splits[resolved.data.train_split]
    check_full_batch(
        len(train_ids), resolved.data.batch_size, 1, resolved.data.repeat, resolved
    )
    reports: list[Any] = [
        getattr(model, name) for name in ("pretrained_report", "init_report")
        if getattr(model, name, None) is not None
    ]
    return RunPlan(
        config=resolved,
        run_dir=run_dir,
        train_images=len(train_ids),
        val_images=len(report.splits[resolved.data.val_split]),
        parameters=sum(p.numel() for p in model.parameters()),
        weight_reports=[str(r) for r in reports],
    )
