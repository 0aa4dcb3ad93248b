"""A run folder's integrity: who may write it, what may be resumed, and ``best.pt`` agreeing
with ``last.pt``.

- **Claiming.** A new run creates its folder with an exclusive ``mkdir`` (numbered ``NAME-2``
  ... when ``NAME`` exists: :func:`unetlab.engine.trainer.new_run_dir`), so it never starts in
  another run's folder, even one created the same instant. A run folder is then held by one
  process (:class:`unetlab.fs.runlock.RunLock`): a second process that targets the same folder
  (``--resume`` of a run that is running) is refused naming the owner.
- **Resuming** continues from ``last.pt`` (it alone has the optimizer state): ``--resume
  RUN/checkpoints/best.pt`` is refused rather than silently read as ``last.pt``; a run that
  has trained all its epochs, stopped early, or spent its time budget (the limit is the total
  over all sessions) says so instead of "resuming" into nothing.
- **best.pt and last.pt agree.** The trainer writes ``last.pt`` (which records the epoch and
  value of the best metric) and then, when the metric improved, ``best.pt`` from the same
  weights. A kill between the two leaves ``last.pt`` claiming a best that ``best.pt`` does not
  hold; :func:`reconcile_best` repairs it on resume from ``last.pt`` itself (same weights), or
  adopts what ``best.pt`` really holds, and never reports a best it does not have. A changed
  ``train.best_metric`` (or mode) is never compared with the old metric's value.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from unetlab.errors import UnetlabError
from unetlab.fs.names import safe_component


def check_run_name(name: str | None) -> None:
    """A ``--name`` is one folder name: it cannot lead out of ``out_dir``."""
    if name is not None:
        safe_component(name, "run name (--name)")


def resume_run_dir(resume: str | Path) -> Path:
    """``RUN`` for ``RUN``, ``RUN/checkpoints`` or ``RUN/checkpoints/last.pt``; any other file
    (``best.pt``) is refused: resuming continues from ``last.pt`` only."""
    path = Path(resume)
    if path.is_file():
        if path.name != "last.pt":
            raise UnetlabError(
                f"--resume continues a run from its last.pt (weights, optimizer, position); "
                f"{path.name} is not that file, and resuming from last.pt instead would not be "
                "what you asked for",
                path,
                f"pass the run folder (--resume {run_folder_guess(path)}) to continue the run",
            )
        path = path.parent
    if path.name == "checkpoints":
        path = path.parent
    if not (path / "checkpoints" / "last.pt").is_file():
        raise UnetlabError(
            "nothing to resume: no checkpoints/last.pt in this folder",
            path,
            "pass the run folder printed by 'unetlab train' (runs/NAME)",
        )
    return path


def run_folder_guess(path: Path) -> Path:
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


def check_resumable(checkpoint: dict[str, Any], cfg: Any, run_dir: Path) -> None:
    """Refuse to 'resume' a run with nothing left to do, saying why and how to go on."""
    epoch = int(checkpoint.get("epoch", 0))
    position = checkpoint.get("position") or {}
    mid_epoch = int(position.get("step_in_epoch", 0)) > 0
    train = cfg.train
    if epoch >= train.epochs and not mid_epoch:
        raise UnetlabError(
            f"this run is complete: it trained all {train.epochs} epoch(s) (last.pt is epoch "
            f"{epoch})",
            run_dir,
            f"to train it longer, raise the epoch count: unetlab train --resume {run_dir} "
            f"--epochs {epoch + max(1, epoch // 2)}",
        )
    stopping = checkpoint.get("early_stopping") or {}
    rule = train.early_stopping
    same_metric = stopping.get("metric") == train.best_metric
    if rule and same_metric and int(stopping.get("bad_validations", 0)) >= rule.patience:
        raise UnetlabError(
            f"this run stopped early: {train.best_metric} had not improved for "
            f"{stopping.get('bad_validations')} validations (patience {rule.patience})",
            run_dir,
            f"to go on, raise the patience: --set train.early_stopping.patience="
            f"{rule.patience * 2}",
        )
    limit = train.time_limit_minutes
    used = float((checkpoint.get("scheduler") or {}).get("elapsed", 0.0))
    if limit and used >= limit * 60.0:
        raise UnetlabError(
            f"the time budget of this run is spent: train.time_limit_minutes={limit:g} is the "
            f"total over all sessions, and {used / 60:.1f} min were used",
            run_dir,
            f"to train longer, raise it: unetlab train --resume {run_dir} --set "
            f"train.time_limit_minutes={math.ceil(used / 60 + limit)}",
        )


def metric_changed(checkpoint: dict[str, Any], cfg: Any) -> str | None:
    """A note when the best metric (or its direction) differs from the one the stored best
    was measured with; then the stored best must not be compared with the new values."""
    stopping = checkpoint.get("early_stopping") or {}
    metric, maximize = stopping.get("metric"), stopping.get("maximize")
    if metric is None:
        return None
    if metric != cfg.train.best_metric or (
        maximize is not None and bool(maximize) != cfg.train.maximize
    ):
        return (
            f"note: train.best_metric is now {cfg.train.best_metric} (was {metric}): the best so "
            f"far ({stopping.get('best')} {metric} at epoch {stopping.get('best_epoch')}) is not "
            f"comparable, so best.pt will hold the best {cfg.train.best_metric} from here on"
        )
    return None


def reconcile_best(
    last: dict[str, Any], best_path: Path, state: Any, metric: str
) -> tuple[dict[str, Any] | None, str | None]:
    """Make the resumed best agree with ``best.pt`` (see module doc).

    ``state`` has ``best`` and ``best_epoch`` (from ``last.pt``); they are corrected in place.
    Returns ``(payload, note)``: a payload to write as ``best.pt`` when it must be repaired
    from ``last.pt``, and a note for the user (None when all agreed).
    """
    from unetlab.engine.checkpoint import load_checkpoint

    claimed = state.best_epoch
    held = None
    if best_path.exists():
        try:
            checkpoint = load_checkpoint(best_path)
        except UnetlabError:
            checkpoint = None
        if checkpoint is not None:
            stopping = checkpoint.get("early_stopping") or {}
            held = (int(checkpoint.get("epoch", -1)), checkpoint.get("best_metric"),
                    stopping.get("metric"))
    if claimed is None:
        return None, None  # nothing claimed; a best.pt is replaced at the next improvement
    if held is not None and held[0] == claimed:
        return None, None
    if int(last.get("epoch", -1)) == claimed:  # killed between writing last.pt and best.pt
        payload = {k: v for k, v in last.items() if k not in ("optimizer", "path")}
        what = "missing" if held is None else f"still epoch {held[0]}"
        return payload, (
            f"note: best.pt was {what} but last.pt says the best {metric} is epoch {claimed} "
            "(the run was stopped between the two writes): best.pt rewritten from last.pt"
        )
    if held is not None and held[2] in (None, metric) and held[1] is not None:
        note = (
            f"note: last.pt says the best {metric} is epoch {claimed}, but best.pt holds epoch "
            f"{held[0]} ({metric} {held[1]:.4f}): continuing with the best that best.pt holds"
        )
        state.best, state.best_epoch = float(held[1]), held[0]
        return None, note
    state.best, state.best_epoch = None, None
    return None, (
        f"note: best.pt does not hold epoch {claimed}, the best {metric} last.pt records, and "
        "cannot be rebuilt: the best is tracked afresh from the next validation"
    )
