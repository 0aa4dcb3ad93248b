"""The training loop: ``train(config) -> RunResult``, the Python API under ``unetlab train``.

One run, in order: check the dataset (clear errors before any training), build the model, loss,
optimizer and loaders, then per epoch: train (one learning-rate update per step), validate
every ``val_every`` epochs with the same measuring loop ``unetlab evaluate`` uses, append a row
to ``metrics.csv`` and write ``checkpoints/last.pt`` (and ``best.pt`` when the chosen metric
improved). At the end: curves in ``plots/`` and image | truth | prediction panels in
``predictions/``.

A run stops early, always leaving a resumable ``last.pt``, on Ctrl-C (after the current step),
on ``train.time_limit_minutes``, or by early stopping; a non-finite loss stops it with an
error and the previous checkpoint untouched. ``train(config, resume=RUN)`` continues from
``RUN/checkpoints/last.pt`` exactly: same weights, optimizer, scaler, epoch and position in the
epoch; the learning rate is a function of progress and the data order and augmentation are
functions of (seed, epoch, sample), so nothing else needs replaying.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unetlab.data.layouts import is_split_path
from unetlab.engine import distributed as dist_utils
from unetlab.engine.builders import (
    amp_dtype,
    build_criterion,
    build_network,
    build_optimizer,
    check_patch_size,
    resolve_data,
    use_channels_last,
    weight_map_options,
)
from unetlab.engine.checkpoint import load_checkpoint, load_state_dict_checked, save_checkpoint
from unetlab.engine.config import RunConfig, load_config
from unetlab.engine.distributed import DistContext
from unetlab.engine.freeze import encoder_of, set_frozen, train_mode
from unetlab.engine.interrupt import GracefulInterrupt
from unetlab.engine.loaders import train_loader, val_loader
from unetlab.engine.rng import capture_rng, derived_seed, restore_rng, seed_everything
from unetlab.engine.runfolder import (
    check_resumable,
    check_run_name,
    metric_changed,
    reconcile_best,
    resume_run_dir,
)
from unetlab.engine.runlog import Progress, TensorBoard, format_row, write_metrics_csv
from unetlab.engine.schedule import lr_at, set_lr
from unetlab.errors import UnetlabError
from unetlab.fs.atomic import make_folder, overwriting, write_text
from unetlab.fs.oserrors import os_error
from unetlab.fs.runlock import RunLock
from unetlab.fs.testpoint import pause_point
from unetlab.losses.deep_supervision import deep_supervision_loss

STOP_COMPLETED, STOP_EARLY, STOP_TIME, STOP_INTERRUPTED = (
    "completed",
    "early_stopping",
    "time_limit",
    "interrupted",
)


class TrainingDiverged(UnetlabError):
    """The loss became NaN or infinite; the last good checkpoint was kept."""


@dataclass
class RunResult:
    """What a run produced. ``stopped``: completed, early_stopping, time_limit or interrupted."""

    run_dir: Path
    last_checkpoint: Path
    best_checkpoint: Path | None
    epochs: int
    global_step: int
    best_metric: float | None
    stopped: str
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def resume_command(self) -> str:
        return f"unetlab train --resume {self.run_dir}"


@dataclass
class _State:
    """Everything that changes while training and is saved for resuming."""

    epoch: int = 0  # completed epochs
    global_step: int = 0
    step_in_epoch: int = 0  # > 0 only while resuming in the middle of an epoch
    # this rank's share of the epoch in progress; the run's totals are their sum over ranks
    # (a resumed rank 0 also carries the totals of the steps before the interrupt)
    loss_sum: float = 0.0
    loss_count: int = 0
    epoch_seconds: float = 0.0
    elapsed: float = 0.0  # seconds of earlier sessions of this run (for the time limit)
    history: list[dict[str, Any]] = field(default_factory=list)
    best: float | None = None
    best_epoch: int | None = None
    bad_validations: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def train(
    config: RunConfig | dict | str | Path | None = None,
    *,
    resume: str | Path | None = None,
    extra_files: dict[str, str] | None = None,
) -> RunResult:
    """Train a model; the CLI's ``unetlab train`` is a thin layer over this.

    Args:
        config: a :class:`RunConfig`, a dict of the same shape or a YAML path. With ``resume``
            and no config, the run's own ``config.yaml`` is used.
        resume: a run folder (or its ``last.pt``) to continue exactly where it stopped.
        extra_files: text files to write into the run folder when it starts (name -> text),
            e.g. the ``plan.yaml`` a planned run was made from.

    Under ``torchrun`` every process calls this; rank 0 alone writes files and prints.
    """
    if config is None:
        if resume is None:
            raise UnetlabError("train() needs a config or a run folder to resume")
        config = run_dir_of(resume) / "config.yaml"
    cfg = config if isinstance(config, RunConfig) else load_config(config)
    context = dist_utils.setup(cfg.train.device)
    try:
        # resuming is consent to replace the run's own files (config.yaml, checkpoints ...)
        with overwriting(resume is not None):
            trainer = Trainer(cfg, context, resume)
            try:
                if context.is_main:
                    for name, text in (extra_files or {}).items():
                        write_text(trainer.run_dir / Path(name).name, text)
                return trainer.fit()
            finally:
                trainer.release()
    finally:
        dist_utils.cleanup(context)


def run_dir_of(resume: str | Path) -> Path:
    """``RUN`` for ``RUN``, ``RUN/checkpoints`` or ``RUN/checkpoints/last.pt`` (any other file
    is refused: see :func:`unetlab.engine.runfolder.resume_run_dir`)."""
    return resume_run_dir(resume)


def new_run_dir(cfg: RunConfig, claim: bool = True) -> Path:
    """``out_dir/name`` (without a name ``<dataset>-<model>``), numbered ``-2``, ``-3`` ... when
    that folder exists: a new run never writes into another run's folder.

    ``claim`` creates the folder with an exclusive ``mkdir``, which fails if it exists even if it
    appeared this instant, so two runs started at once never share one (the first takes NAME,
    the other NAME-2). Without ``claim`` (a dry run) the folder is only named.
    """
    check_run_name(cfg.name)
    name = cfg.name or f"{Path(cfg.data.root or 'data').resolve().name}-{cfg.model.name}"
    base = Path(cfg.out_dir) / name
    if claim:
        make_folder(cfg.out_dir)
    candidate, number = base, 2
    while not (_claimed(candidate) if claim else not candidate.exists()):
        candidate, number = base.with_name(f"{base.name}-{number}"), number + 1
    return candidate


def _remove_if_empty(*folders: Path) -> None:
    """Remove the folders a new run created if it failed before writing into them, so that
    running it again after fixing the problem gets the same name."""
    for folder in folders:
        with contextlib.suppress(OSError):  # not empty, or gone: leave it
            folder.rmdir()


def _claimed(folder: Path) -> bool:
    """Create ``folder``; False if it exists (however it got there)."""
    try:
        folder.mkdir()
    except FileExistsError:
        return False
    except OSError as exc:
        raise os_error(exc, folder, "create the run folder") from None
    return True


def located(cfg: RunConfig, run_dir: Path) -> RunConfig:
    """``cfg`` as ``RUN/config.yaml`` stores it: the data root (and split lists given as paths)
    absolute, and the run's own name
    and (absolute) parent folder, so ``unetlab train RUN/config.yaml`` works from any folder
    (it starts a new run beside this one, numbered)."""
    placed = cfg.model_copy(deep=True)
    if placed.data.root is not None:
        placed.data.root = str(Path(placed.data.root).expanduser().resolve())
    for field_name in ("train_split", "val_split"):
        split = getattr(placed.data, field_name)
        if is_split_path(split):  # an id list outside the dataset, named by its path
            setattr(placed.data, field_name, str(Path(split).expanduser().resolve()))
    placed.name = run_dir.name
    placed.out_dir = str(run_dir.parent.expanduser().resolve())
    return placed


def check_full_batch(
    num_images: int, batch_size: int, world_size: int, repeat: int, cfg: RunConfig
) -> None:
    """An epoch needs one full batch per process (the last incomplete batch is dropped)."""
    per_process = -(-num_images * repeat // world_size)
    if per_process < batch_size:
        raise UnetlabError(
            f"the '{cfg.data.train_split}' split has {num_images} images: not one full batch "
            f"of {batch_size} per process ({world_size} process(es))",
            cfg.data.root,
            "lower data.batch_size, raise data.repeat, or add training images",
        )


class Trainer:
    """One training run on this process (see the module docstring for the sequence)."""

    def __init__(self, cfg: RunConfig, context: DistContext, resume: str | Path | None):
        self.context = context
        self.device = context.device
        if cfg.data.root is None:
            raise UnetlabError(
                "no dataset given", hint="pass --data DIR or set data.root in the config"
            )
        self.run_dir = (
            run_dir_of(resume)
            if resume is not None
            else dist_utils.on_main(context, lambda: new_run_dir(cfg))
        )
        self.lock: RunLock | None = None

        def claim() -> None:  # one process per run folder (rank 0 holds it for all): a
            # second process that targets this folder (a resume) is refused naming this one
            self.lock = RunLock(self.run_dir).acquire()
            for note in self.lock.notes:
                print(note, flush=True)

        try:
            dist_utils.on_main(context, claim)
            self._setup(cfg, resume)
        except BaseException:
            self.release()
            if resume is None and context.is_main:
                _remove_if_empty(self.run_dir / "checkpoints", self.run_dir)
            raise

    def release(self) -> None:
        """Give the run folder back (the lock file is removed)."""
        if self.lock is not None:
            self.lock.release()

    def _setup(self, cfg: RunConfig, resume: str | Path | None) -> None:
        from unetlab.data import check_dataset

        context = self.context
        self.report = dist_utils.on_main(
            context,
            lambda: check_dataset(
                cfg.data.root, cfg.data.num_classes, (cfg.data.train_split, cfg.data.val_split)
            ),
        )
        self.cfg, self.spec = resolve_data(cfg, self.report)
        self.cfg = located(self.cfg, self.run_dir)
        cfg = self.cfg
        seed_everything(cfg.train.seed, cfg.train.deterministic)
        self.model = build_network(cfg, pretrained=resume is None).to(self.device)
        # deep supervision's heads; a registered model need not derive from SegmentationModel
        self.aux_levels = int(getattr(self.model, "aux_levels", 0))
        self.patch = cfg.data.patch_hw
        check_patch_size(self.model, self.patch, cfg.model.name)
        self.amp_note = ""
        if cfg.train.sync_bn and context.distributed and self.device.type == "cuda":
            # replaces the BatchNorm layers inside the model in place (the root is not one)
            nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.encoder = (
            encoder_of(self.model, cfg.model.name) if cfg.train.freeze_encoder_epochs else None
        )
        self.criterion = build_criterion(cfg, self.report, self.spec.num_classes).to(self.device)
        self.amp = self._resolve_amp()
        self.memory_format = (
            torch.channels_last
            if use_channels_last(cfg.train.channels_last, self.device, self.amp)
            else torch.contiguous_format
        )
        # torch's stubs for Module.to lack the memory_format keyword it accepts
        self.model.to(memory_format=self.memory_format)  # type: ignore[call-overload]
        self.optimizer = build_optimizer(cfg, self.model)
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.amp == torch.float16 and self.device.type == "cuda"
        )
        self._build_datasets()
        self.state = _State()
        self.pending_rng: dict[str, Any] | None = None
        self.frozen: bool | None = None
        self.ddp_model: nn.Module = self.model
        self.batch_size = 0
        self.loader: Any = None
        self.sampler: Any = None
        self.last_path = self.run_dir / "checkpoints" / "last.pt"
        self.best_path = self.run_dir / "checkpoints" / "best.pt"
        self.main = context.is_main
        self.progress = Progress(
            self.main, cfg.train.epochs, cfg.train.log_every, cfg.train.time_limit_minutes
        )
        self.session_started = time.perf_counter()  # reset when fit() starts
        if resume is not None:
            dist_utils.barrier(context)
            last = load_checkpoint(self.last_path, map_location=self.device)
            self._restore(last)  # repairs best.pt if a kill left it behind last.pt
            check_resumable(last, self.cfg, self.run_dir)
        elif self.main:
            make_folder(self.run_dir / "checkpoints")
        if self.main:
            cfg.save(self.run_dir / "config.yaml")
        self.tensorboard = TensorBoard(
            self.run_dir / "tensorboard", self.main, purge_step=self.state.global_step or None
        )

    # ------------------------------------------------------------------ setup

    def _resolve_amp(self) -> torch.dtype | None:
        """``train.amp``; ``auto`` on a CPU is measured (fp32 vs bf16 steps of this model) and
        the answer written into the run's config, so a resumed run keeps it."""
        cfg = self.cfg
        if cfg.train.amp != "auto" or self.device.type != "cpu" or self.context.distributed:
            return amp_dtype(cfg.train.amp, self.device)
        from unetlab.engine.probe import measured_cpu_precision

        layout = use_channels_last(cfg.train.channels_last, self.device, torch.bfloat16)
        outputs = 1 if cfg.binary else self.spec.num_classes
        choice, why = measured_cpu_precision(
            self.model, self.spec.in_channels, outputs, self.patch, cfg.data.batch_size, layout
        )
        self.amp_note = f"train.amp auto -> {choice} ({why})"
        cfg.train.amp = "off" if choice == "fp32" else choice
        return amp_dtype(cfg.train.amp, self.device)

    def _build_datasets(self) -> None:
        from unetlab.data import open_dataset
        from unetlab.data.transforms import build_transform

        cfg = self.cfg
        common = {
            "num_classes": self.spec.num_classes,
            "normalization": self.spec.normalization,
            "weight_map": weight_map_options(cfg),
            "in_channels": self.spec.in_channels,
            "working_scale": cfg.data.working_scale,
        }
        self.train_transform = build_transform(cfg.data.augment, self.patch, train=True)
        self.train_set = open_dataset(
            cfg.data.root, cfg.data.train_split, transform=self.train_transform, **common
        )
        self.val_set = open_dataset(
            cfg.data.root,
            cfg.data.val_split,
            transform=build_transform(cfg.data.augment, self.patch, train=False),
            **common,
        )
        self.val_loader = val_loader(
            self.val_set, cfg.data.val_batch_size, self.context, cfg.data.num_workers
        )

    def _enter_epoch(self, epoch: int) -> None:
        """Freeze or unfreeze the encoder for this epoch; (re)build the DDP wrapper and the
        loader when that changes the trainable parameters or the batch size."""
        cfg = self.cfg
        frozen = epoch < cfg.train.freeze_encoder_epochs
        if frozen != self.frozen:
            if self.encoder is not None:
                set_frozen(self.encoder, frozen)
                if self.frozen is not None:
                    self.progress.info(f"epoch {epoch + 1}: encoder unfrozen")
            self.frozen = frozen
            self.ddp_model = dist_utils.wrap_model(self.model, self.context)
        batch_size = cfg.data.batch_size
        if not frozen and cfg.train.freeze_encoder_epochs and cfg.train.unfreeze_batch_size:
            batch_size = cfg.train.unfreeze_batch_size
        if batch_size != self.batch_size:
            self.batch_size = batch_size
            self.loader, self.sampler = train_loader(
                self.train_set,
                batch_size,
                self.context,
                cfg.train.seed,
                cfg.data.num_workers,
                cfg.data.repeat,
            )
            check_full_batch(
                len(self.train_set), batch_size, self.context.world_size, cfg.data.repeat, cfg
            )
        skip = self.state.step_in_epoch * batch_size
        self.sampler.set_epoch(epoch, skip=skip)

    # ------------------------------------------------------------------ the loop

    def fit(self) -> RunResult:
        cfg, state = self.cfg, self.state
        self._announce()
        self.session_started = time.perf_counter()
        stopped = STOP_COMPLETED
        message = (
            "\nStopping after this step and saving checkpoints/last.pt "
            "(press Ctrl-C again to abort without saving)."
        )
        with GracefulInterrupt(message if self.main else "") as interrupt:
            self.interrupt = interrupt
            while state.epoch < cfg.train.epochs:
                stopped = self._run_epoch()
                if stopped != STOP_COMPLETED:
                    break
        return self._finish(stopped)

    def _run_epoch(self) -> str:
        """Train one epoch (or its rest); validate and save. Returns why the loop should stop."""
        cfg, state, context = self.cfg, self.state, self.context
        epoch = state.epoch
        if state.step_in_epoch == 0:
            seed_everything(derived_seed(cfg.train.seed, epoch, context.rank))
            state.loss_sum, state.loss_count, state.epoch_seconds = 0.0, 0, 0.0
        self._enter_epoch(epoch)
        steps = len(self.loader) + state.step_in_epoch
        if cfg.train.max_steps_per_epoch:
            steps = min(steps, cfg.train.max_steps_per_epoch)
        train_mode(self.ddp_model, self.encoder if self.frozen else None)
        self.progress.start_epoch(epoch + 1, steps, state.step_in_epoch)
        started = time.perf_counter()
        stop = STOP_COMPLETED
        batches = iter(self.loader)  # starting it draws from torch's generator: restore after
        if self.pending_rng is not None:
            restore_rng(self.pending_rng)
            self.pending_rng = None
        for batch in batches:
            if state.step_in_epoch >= steps:
                break
            interrupted, time_up = self._step(batch, epoch, steps)
            if interrupted:
                stop = STOP_INTERRUPTED
                break
            if time_up:
                stop = STOP_TIME
                break
        seconds = time.perf_counter() - started
        state.epoch_seconds += seconds
        self.progress.end_epoch()
        more_epochs = stop == STOP_COMPLETED and epoch + 1 < cfg.train.epochs
        if more_epochs and dist_utils.max_over_ranks(context, self._time_up())[0]:
            stop = STOP_TIME  # the budget ends with this epoch: validate it now
        if stop == STOP_INTERRUPTED and state.step_in_epoch < steps:
            self._save_last(partial=True)
            return stop
        # the epoch is complete (or cut short by the time limit): validate and save
        state.epoch, state.step_in_epoch = epoch + 1, 0
        row = self._epoch_row(validate=self._should_validate(stop))
        improved = self._update_best(row)
        self._save_last(partial=False, metrics=row)  # records which epoch best.pt holds
        if improved:
            pause_point("between-last-and-best")
            self._save_best(row)
        return stop if stop != STOP_COMPLETED else self._early_stop()

    def _step(self, batch: dict[str, Any], epoch: int, steps: int) -> tuple[bool, bool]:
        """One optimizer step; returns (interrupted, time limit reached) as agreed by all ranks."""
        cfg, state = self.cfg, self.state
        images = batch["image"].to(self.device, non_blocking=True)
        images = images.contiguous(memory_format=self.memory_format)
        masks = batch["mask"].to(self.device, non_blocking=True)
        weight = batch.get("weight")
        weight = None if weight is None else weight.to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            aux: list[torch.Tensor] = []
            if self.aux_levels:  # deep supervision: the auxiliary heads are scored too
                logits, aux = self.ddp_model(images, aux=True)
            else:
                logits = self.ddp_model(images)
            if logits.shape[-2:] != masks.shape[-2:]:  # valid padding: score the centre
                masks, weight = _centre_crop(masks, weight, logits.shape[-2:])
            loss, main = deep_supervision_loss(self.criterion, logits, aux, masks, weight=weight)
        total_value = float(loss.detach())
        # the logged train loss is the main output's, comparable with the val loss
        loss_value = total_value if main is loss else float(main.detach())
        nonfinite, interrupted, elapsed = dist_utils.max_over_ranks(
            self.context, not math.isfinite(total_value), self.interrupt.requested,
            self._elapsed(),
        )  # fmt: skip
        if nonfinite:
            self._diverged(epoch, f"loss became {total_value}")
        lr = self._lr(epoch + (state.step_in_epoch + 1) / steps, steps, elapsed)
        set_lr(self.optimizer, lr)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.optim.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        state.global_step += 1
        state.step_in_epoch += 1
        state.loss_sum += loss_value
        state.loss_count += 1
        self.progress.step(loss_value, lr)
        pause_point(f"after-step:{state.global_step}")  # a test can signal here
        return bool(interrupted), self._time_up(elapsed)

    # ------------------------------------------------------------------ helpers of the loop

    def _lr(self, progress: float, steps: int, elapsed: float) -> float:
        """The rate for the step ending at ``progress`` epochs; with a time limit the decay also
        follows the clock (``elapsed`` seconds, agreed by all ranks so they use one rate)."""
        cfg = self.cfg
        limit = cfg.train.time_limit_minutes
        time_fraction = elapsed / (limit * 60.0) if limit else 0.0
        warmup = cfg.schedule.warmup_epochs or cfg.schedule.warmup_steps / max(steps, 1)
        return lr_at(cfg.schedule, cfg.optim.lr, progress, cfg.train.epochs, warmup, time_fraction)

    def _elapsed(self) -> float:
        """Wall-clock seconds of training and validation so far, over every session of this
        run (start-up and the final plots and predictions are not counted)."""
        return self.state.elapsed + time.perf_counter() - self.session_started

    def _time_up(self, elapsed: float | None = None) -> bool:
        limit = self.cfg.train.time_limit_minutes
        elapsed = self._elapsed() if elapsed is None else elapsed
        return limit is not None and elapsed >= limit * 60.0

    def _should_validate(self, stop: str) -> bool:
        epoch = self.state.epoch
        return (
            epoch % self.cfg.train.val_every == 0
            or epoch == self.cfg.train.epochs
            or stop != STOP_COMPLETED
        )

    def _epoch_row(self, validate: bool) -> dict[str, Any]:
        state = self.state
        loss_sum, loss_count = dist_utils.sum_over_ranks(
            self.context, state.loss_sum, state.loss_count
        )
        row: dict[str, Any] = {
            "epoch": state.epoch,
            "lr": self.optimizer.param_groups[0]["lr"],
            "train_loss": loss_sum / max(loss_count, 1),
        }
        if validate:
            row.update(self._validate())
        row["seconds"] = round(state.epoch_seconds, 3)
        state.history.append(row)
        self.progress.info(format_row(row))
        self.tensorboard.scalars(row, state.global_step)
        return row

    def _validate(self) -> dict[str, Any]:
        from unetlab.engine.measure import collect_confusion

        measured = collect_confusion(
            self.model,
            self.val_loader,
            self.spec.num_classes,
            self.device,
            autocast_dtype=self.amp,
            loss_fn=self.criterion,
        )
        scores = measured.matrix.compute()
        row: dict[str, Any] = {
            "val_loss": measured.loss,
            "miou": float(scores["miou"]),
            "pixel_acc": float(scores["pixel_accuracy"]),
        }
        for name, iou in zip(self.spec.class_names, scores["iou"], strict=True):
            row[f"iou_{name}"] = float(iou)
        return row

    def _update_best(self, row: dict[str, Any]) -> bool:
        """Whether ``row`` improves the best metric (by more than early stopping's min_delta)."""
        cfg, state = self.cfg.train, self.state
        value = row.get(cfg.best_metric)
        if value is None or not math.isfinite(value):
            return False
        delta = cfg.early_stopping.min_delta if cfg.early_stopping else 0.0
        sign = 1.0 if cfg.maximize else -1.0
        improved = state.best is None or sign * (value - state.best) > delta
        if improved:
            state.best, state.best_epoch, state.bad_validations = value, state.epoch, 0
        else:
            state.bad_validations += 1
        return improved

    def _early_stop(self) -> str:
        rule = self.cfg.train.early_stopping
        if rule and self.state.bad_validations >= rule.patience:
            self.progress.info(
                f"early stopping: {self.cfg.train.best_metric} has not improved for "
                f"{self.state.bad_validations} validations (best {self.state.best:.4f} at epoch "
                f"{self.state.best_epoch})"
            )
            return STOP_EARLY
        return STOP_COMPLETED

    def _diverged(self, epoch: int, what: str) -> None:
        kept = (
            f"the last good checkpoint {self.last_path} (epoch {self.state.epoch}) was kept "
            "unchanged"
            if self.last_path.exists()
            else "no checkpoint had been written yet"
        )
        raise TrainingDiverged(
            f"training diverged: {what} at epoch {epoch + 1}, step {self.state.step_in_epoch + 1}"
            f" (global step {self.state.global_step + 1}); stopped instead of training on "
            f"garbage, and {kept}",
            self.run_dir,
            f"lower optim.lr (now {self.cfg.optim.lr:g}), set optim.grad_clip (e.g. 1.0), "
            "use train.amp off or bf16 instead of fp16, and check the data with "
            f"'unetlab data check {self.cfg.data.root}'",
        )

    # ------------------------------------------------------------------ checkpoints

    def _payload(
        self,
        metrics: dict[str, Any] | None,
        rng: list[Any] | None,
        position: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The checkpoint; ``position`` only for a ``last.pt`` saved in the middle of an epoch."""
        state = self.state
        position = position or {
            "step_in_epoch": 0, "loss_sum": 0.0, "loss_count": 0, "epoch_seconds": 0.0
        }
        return {
            "model": dict(self.model.spec),
            "state_dict": self.model.state_dict(),
            "data": self.spec.to_checkpoint(),
            "config": self.cfg.to_dict(),
            "epoch": state.epoch,
            "global_step": state.global_step,
            "best_metric": state.best,  # value of train.best_metric at best_epoch
            "metrics": dict(metrics or (state.history[-1] if state.history else {})),
            "history": [dict(row) for row in state.history],
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {"name": self.cfg.schedule.name, "elapsed": self._elapsed()},
            "scaler": self.scaler.state_dict(),
            "rng": rng,
            "early_stopping": {
                "metric": self.cfg.train.best_metric,
                "maximize": self.cfg.train.maximize,
                "best": state.best,
                "best_epoch": state.best_epoch,
                "bad_validations": state.bad_validations,
            },
            "position": position,
        }

    def _save_last(self, partial: bool, metrics: dict[str, Any] | None = None) -> None:
        self._check_weights_finite()
        state = self.state
        rng = dist_utils.gather_objects(self.context, capture_rng())  # every rank's generators
        # the epoch's loss so far over every rank, not rank 0's share: all ranks call this
        loss_sum, loss_count = dist_utils.sum_over_ranks(
            self.context, state.loss_sum, state.loss_count
        )
        position = {
            "step_in_epoch": state.step_in_epoch,
            "loss_sum": loss_sum,
            "loss_count": int(loss_count),
            "epoch_seconds": state.epoch_seconds,
        }
        payload = self._payload(metrics, rng, position if partial else None)
        if self.main:
            save_checkpoint(payload, self.last_path)
            write_metrics_csv(self.run_dir / "metrics.csv", self.state.history)
        dist_utils.barrier(self.context)

    def _save_best(self, metrics: dict[str, Any]) -> None:
        if self.main:
            payload = self._payload(metrics, rng=None)
            payload.pop("optimizer")  # best.pt is for using the model, not for resuming
            save_checkpoint(payload, self.best_path)

    def _check_weights_finite(self) -> None:
        if not all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            self._diverged(self.state.epoch, "a weight became NaN or infinite")

    def _restore(self, checkpoint: dict[str, Any]) -> None:
        """Continue from ``last.pt``: weights, optimizer, scaler, counters, RNG."""
        load_state_dict_checked(self.model, checkpoint["state_dict"], checkpoint["path"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        state = self.state
        position = checkpoint.get("position", {})
        state.epoch = int(checkpoint["epoch"])
        state.global_step = int(checkpoint["global_step"])
        state.step_in_epoch = int(position.get("step_in_epoch", 0))
        if self.context.is_main:  # the totals over ranks; the other ranks' shares start at 0
            state.loss_sum = float(position.get("loss_sum", 0.0))
            state.loss_count = int(position.get("loss_count", 0))
        state.epoch_seconds = float(position.get("epoch_seconds", 0.0))
        state.elapsed = float(checkpoint.get("scheduler", {}).get("elapsed", 0.0))
        state.history = [dict(row) for row in checkpoint.get("history", [])]
        stopping = checkpoint.get("early_stopping", {})
        state.best = stopping.get("best")
        state.best_epoch = stopping.get("best_epoch")
        state.bad_validations = int(stopping.get("bad_validations", 0))
        rng = checkpoint.get("rng") or []
        if state.step_in_epoch and len(rng) == self.context.world_size:
            self.pending_rng = rng[self.context.rank]  # restored once the loader has started
        changed = metric_changed(checkpoint, self.cfg)
        if changed:  # the stored best is another metric's value: never compare with it
            state.best, state.best_epoch, state.bad_validations = None, None, 0
            self.progress.info(changed)
        else:
            state.best, state.best_epoch = dist_utils.on_main(self.context, self._reconcile_best)

    def _reconcile_best(self) -> tuple[float | None, int | None]:
        """best.pt and last.pt agree after any kill: repair or adopt (runfolder module)."""
        state = self.state
        last = load_checkpoint(self.last_path)
        repair, note = reconcile_best(last, self.best_path, state, self.cfg.train.best_metric)
        if repair is not None:
            save_checkpoint(repair, self.best_path)
        if note:
            self.progress.info(note)
        return state.best, state.best_epoch

    # ------------------------------------------------------------------ start and end

    def _announce(self) -> None:
        cfg, ctx = self.cfg, self.context
        params = sum(p.numel() for p in self.model.parameters())
        where = "resuming at" if self.state.epoch or self.state.step_in_epoch else "starting"
        amp = {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp]
        levels = self.aux_levels
        supervision = f", deep supervision on {levels} more levels" if levels else ""
        self.progress.info(
            f"run folder: {self.run_dir} ({where} "
            f"{self.progress.epoch_label(self.state.epoch + 1)})\n"
            f"data: {cfg.data.root}: {len(self.train_set)} train / {len(self.val_set)} val "
            f"images, {self.spec.num_classes} classes ({', '.join(self.spec.class_names)})\n"
            f"model: {cfg.model.name} ({params / 1e6:.2f} M parameters{supervision}), "
            f"loss {cfg.loss.name}, "
            f"{cfg.optim.name} lr {cfg.optim.lr:g}, {cfg.schedule.name} schedule\n"
            f"device: {self.device}, amp {amp}, "
            f"{'channels_last' if self.memory_format == torch.channels_last else 'NCHW'}, "
            f"{ctx.world_size} process(es), batch "
            f"{cfg.data.batch_size} per process ({cfg.data.batch_size * ctx.world_size} global), "
            f"patch {self.patch[0]}x{self.patch[1]}"
            + (f"\n{self.amp_note}" if self.amp_note else "")
        )
        for report_name in ("pretrained_report", "init_report"):
            report = getattr(self.model, report_name, None)
            if report is not None:
                self.progress.info(str(report))
        for note in cfg.notes:
            self.progress.info(f"note: {note}")

    def _finish(self, stopped: str) -> RunResult:
        state = self.state
        self.tensorboard.close()
        best = self.best_path if self.best_path.exists() else None
        if self.main and stopped != STOP_INTERRUPTED:
            self._write_plots_and_predictions(best)
        result = RunResult(
            run_dir=self.run_dir,
            last_checkpoint=self.last_path,
            best_checkpoint=best,
            epochs=state.epoch,
            global_step=state.global_step,
            best_metric=state.best,
            stopped=stopped,
            metrics=dict(state.history[-1]) if state.history else {},
        )
        if stopped == STOP_INTERRUPTED:
            self.progress.info(
                f"interrupted at epoch {state.epoch + 1}, step {state.step_in_epoch}: saved "
                f"{self.last_path}\nresume with: {result.resume_command}"
            )
        elif stopped == STOP_TIME:
            self.progress.info(
                f"time limit of {self.cfg.train.time_limit_minutes:g} min reached after "
                f"{state.epoch} epoch(s); continue with: {result.resume_command} "
                "--set train.time_limit_minutes=..."
            )
        return result

    def _write_plots_and_predictions(self, best: Path | None) -> None:
        from unetlab.engine.plots import plot_curves
        from unetlab.engine.predictions import save_predictions

        plot_curves(self.run_dir / "metrics.csv", self.run_dir / "plots")
        count = self.cfg.train.num_predictions
        if count and best is not None:
            weights = load_checkpoint(best, map_location=self.device)["state_dict"]
            self.model.load_state_dict(weights)
            save_predictions(
                self.model, self.val_set, self.spec, self.run_dir / "predictions",
                count, self.device, self.amp,
            )
        self.progress.info(
            f"done: best {self.cfg.train.best_metric} "
            f"{'n/a' if self.state.best is None else f'{self.state.best:.4f}'}"
            f" (epoch {self.state.best_epoch}) -> {best or self.last_path}\n"
            f"metrics: {self.run_dir / 'metrics.csv'}; curves: {self.run_dir / 'plots'}; "
            f"predictions: {self.run_dir / 'predictions'}"
        )


def _centre_crop(
    masks: torch.Tensor, weight: torch.Tensor | None, size: torch.Size
) -> tuple[torch.Tensor, torch.Tensor | None]:
    from unetlab.models.padding import crop_to

    size_hw = (int(size[0]), int(size[1]))
    return crop_to(masks, size_hw), None if weight is None else crop_to(weight, size_hw)
