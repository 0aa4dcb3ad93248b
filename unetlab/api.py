"""The Python API at the top of the package: ``unetlab.train``, ``unetlab.dry_run``,
``unetlab.evaluate``, ``unetlab.predict``, with one keyword per concept, named as the command
line names it.

``unetlab.train(preset="camvid", data="data/camvid", epochs=3)`` is ``unetlab train --preset
camvid --data data/camvid --epochs 3``; ``unetlab.evaluate(run, data=..., out=...)`` is
``unetlab evaluate RUN --data ... --out ...``. The engine functions underneath
(:func:`unetlab.engine.trainer.train`, :func:`unetlab.engine.evaluate.evaluate`) stay as they
are for code that already calls them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unetlab.errors import UnetlabError

if TYPE_CHECKING:
    from unetlab.engine.config import RunConfig
    from unetlab.engine.dryrun import RunPlan
    from unetlab.engine.evaluate import EvaluationReport
    from unetlab.engine.trainer import RunResult
    from unetlab.inference.files import Written


def run_config(
    config: RunConfig | Mapping[str, Any] | str | Path | None = None,
    *,
    preset: str | None = None,
    data: str | Path | None = None,
    model: str | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    name: str | None = None,
    out_dir: str | Path | None = None,
    overrides: Iterable[str] = (),
    resume: str | Path | None = None,
    budget: str | float | None = None,
) -> RunConfig:
    """The configuration ``unetlab train`` builds from the same arguments: defaults < preset
    < ``config`` (a YAML file, a dict or a :class:`RunConfig`) < the keywords < ``overrides``
    (``"section.field=value"``); with ``resume``, the run's own ``config.yaml``. ``budget``
    (``"20m"``, or minutes) makes the clock the run's only limit (see :func:`planned_config`
    for a budget with no config)."""
    from unetlab.engine.config import UNTIL_THE_CLOCK, RunConfig, load_config
    from unetlab.engine.trainer import run_dir_of

    if isinstance(overrides, str):
        overrides = [overrides]
    options = _nested(
        {
            ("data", "root"): None if data is None else str(data),
            ("model", "name"): model,
            ("train", "epochs"): epochs,
            ("data", "batch_size"): batch_size,
            ("train", "device"): device,
            ("name",): name,
            ("out_dir",): None if out_dir is None else str(out_dir),
        }
    )
    if budget is not None:
        from unetlab.plan import parse_budget

        train = options.setdefault("train", {})
        train["time_limit_minutes"] = parse_budget(budget) / 60.0
        train.setdefault("epochs", UNTIL_THE_CLOCK)
    if resume is not None:
        if config is not None or preset is not None:
            raise UnetlabError(
                "--resume continues a run with its own config.yaml; it cannot be combined "
                "with a CONFIG file or --preset",
                resume,
                "leave out CONFIG/--preset (use --set or --epochs to change fields)",
            )
        config = run_dir_of(resume) / "config.yaml"
    if isinstance(config, RunConfig):
        if not (preset or options or overrides):
            return config
        config = config.to_dict()
    return load_config(config, preset=preset, options=options, overrides=list(overrides))


def train(
    config: RunConfig | Mapping[str, Any] | str | Path | None = None,
    *,
    preset: str | None = None,
    data: str | Path | None = None,
    model: str | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    name: str | None = None,
    out_dir: str | Path | None = None,
    overrides: Iterable[str] = (),
    resume: str | Path | None = None,
    threads: int | None = None,
    budget: str | float | None = None,
    orientation: str = "auto",
) -> RunResult:
    """Train a U-Net, as ``unetlab train`` does with the same options (see :func:`run_config`).

    Returns a :class:`~unetlab.engine.trainer.RunResult` (``run_dir``, ``best_checkpoint``,
    ``metrics`` ...). ``threads``: CPU threads for torch (``--threads``). ``budget`` with
    ``data`` alone (no config, preset or resume) plans the run first (:func:`planned_config`).
    """
    from unetlab.threads import configure_threads

    configure_threads(threads)  # the wait policy, before torch loads (the engine imports it)
    from unetlab.engine.trainer import train as run_training

    configure_threads(threads)  # the count, now torch is loaded (see unetlab.threads)
    extra_files: dict[str, str] = {}
    if budget is not None and config is None and preset is None and resume is None:
        config, extra_files = planned_config(
            data, budget, device=device, orientation=orientation,
            overrides=list(overrides) if overrides is not None else None,
        )
        budget = None  # the plan's time limit already leaves out the planning time
    cfg = run_config(
        config, preset=preset, data=data, model=model, epochs=epochs, batch_size=batch_size,
        device=device, name=name, out_dir=out_dir, overrides=overrides, resume=resume,
        budget=budget,
    )  # fmt: skip
    return run_training(cfg, resume=resume, extra_files=extra_files)


def planned_config(
    data: str | Path | None,
    budget: str | float,
    *,
    device: str | None = None,
    orientation: str = "auto",
    overrides: Sequence[str] | str | None = None,
    log: Callable[[str], None] = print,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Plan a run of ``budget`` for the dataset ``data`` on this machine: (its config, and the
    files for the run folder: ``plan.yaml`` with one reason per choice). The splits come from
    ``overrides`` (``data.train_split=...``, ``data.val_split=...``) when they name them, so
    the plan measures the data it will train and validate on."""
    from unetlab.plan import parse_budget, plan_dataset, plan_to_yaml

    if data is None:
        raise UnetlabError(
            "a budget without a config or preset plans a run for a dataset: pass --data DIR",
            hint="e.g. unetlab train --data ../shared/datasets/isbi2012 --budget 20m",
        )
    splits = {"train_split": "train", "val_split": "val"}
    for override in [overrides] if isinstance(overrides, str) else overrides or []:
        key, _, value = override.partition("=")
        if key.strip() in ("data.train_split", "data.val_split"):
            splits[key.strip().removeprefix("data.")] = value.strip()
    made = plan_dataset(
        data, parse_budget(budget), device=device or "auto",
        orientation=orientation, log=log, **splits,  # type: ignore[arg-type]
    )
    text = plan_to_yaml(made)
    log(text)
    return made.config, {"plan.yaml": text}


def dry_run(
    config: RunConfig | Mapping[str, Any] | str | Path | None = None,
    *,
    resume: str | Path | None = None,
    **options: Any,
) -> RunPlan:
    """What :func:`train` with the same arguments would do, checked without training or
    writing anything (``unetlab train --dry-run``); raises the error training would."""
    from unetlab.engine.dryrun import plan_run

    return plan_run(run_config(config, resume=resume, **options), resume=resume)


_RENAMED = {
    "checkpoint_or_run": "run",
    "data_root": "data",
    "out_dir": "out",
    "num_panels": "worst",
    "panels": "worst",
}
"""The engine's keywords that the API names as the command line does."""


def evaluate(
    run: str | Path | None = None,
    data: str | Path | None = None,
    *,
    split: str = "val",
    out: str | Path | None = None,
    device: str = "auto",
    batch_size: int = 1,
    threshold: float | None = None,
    tta: bool | None = None,
    tta_rot90: bool = False,
    precision: str = "fp32",
    worst: int = 4,
    boundary_class: int | str | None = None,
    verbose: bool = False,
    tile: int = 512,
    overlap: float = 0.25,
    tile_weights: str = "gaussian",
    min_size: int | None = None,
    keep_largest: str | Sequence[int | str] | None = None,
    fill_holes: str | Sequence[int | str] | bool | None = None,
    no_postprocessing: bool = False,
    save_postprocessing: bool = False,
    threads: int | None = None,
    quiet: bool = False,
    overwrite: bool = False,
    **renamed: Any,
) -> EvaluationReport:
    """Score a run folder, a ``.pt`` checkpoint or an exported ``.onnx`` file on ``data``'s
    ``split``, as ``unetlab evaluate RUN --data DATA`` does (same option names).

    Writes ``report.json``, ``per_image.csv``, ``confusion_matrix.png`` and ``panels/`` (the
    ``worst`` images) into ``out`` (default ``RUN/evaluation/<split>``) and returns the report
    (``report.summary()``, ``report.scores``, ``report.per_image``). The older keywords
    (``data_root``, ``out_dir``, ``num_panels``, ``panels``, ``checkpoint_or_run``) still work,
    with a DeprecationWarning. ``min_size``, ``keep_largest``, ``fill_holes`` (classes by name
    or index, ``"all"`` or True for every class but 0) and ``no_postprocessing`` choose the
    post-processing as the command line does.
    ``threads``: CPU threads (``--threads``; :mod:`unetlab.threads`); ``quiet``: no progress
    bar.
    The files of an earlier evaluation in ``out`` are replaced only with ``overwrite=True``.
    """
    from unetlab.threads import configure_threads

    configure_threads(threads)  # before torch loads (the engine imports it)
    from unetlab.engine.evaluate import evaluate as run_evaluation
    from unetlab.fs.atomic import overwriting
    from unetlab.inference.postprocessing import from_flags
    from unetlab.inference.tta import mode_from_flags

    given: dict[str, Any] = {"run": run, "data": data, "out": out, "worst": worst}
    for old, new in _RENAMED.items():
        if old not in renamed:
            continue
        warnings.warn(
            f"evaluate({old}=...) is now evaluate({new}=...), as the command line names it",
            DeprecationWarning,
            stacklevel=2,
        )
        if new != "worst" and given[new] is not None:
            raise TypeError(f"evaluate() got both {old}= and {new}=")
        given[new] = renamed.pop(old)
    if renamed:
        raise TypeError(f"evaluate() got unexpected keyword(s): {', '.join(sorted(renamed))}")
    if given["run"] is None or given["data"] is None:
        raise TypeError("evaluate() needs a run (folder, .pt or .onnx) and data (the dataset)")
    with overwriting(overwrite):
        return run_evaluation(
            given["run"], given["data"], split=split, out_dir=given["out"], device=device,
            batch_size=batch_size, threshold=threshold,
            tta=mode_from_flags(tta, tta_rot90),
            boundary_class=boundary_class, verbose=verbose, precision=precision,
            num_panels=given["worst"], tile=tile, overlap=overlap, tile_weights=tile_weights,
            postprocessing=from_flags(min_size, keep_largest, fill_holes, no_postprocessing),
            save_postprocessing=save_postprocessing,
            threads=threads, progress=not quiet,
        )  # fmt: skip


def predict(
    model: str | Path,
    inputs: str | Path | Iterable[str | Path],
    *,
    out: str | Path = "predictions",
    alpha: float = 0.5,
    threshold: float | None = None,
    tta: bool | None = None,
    tta_rot90: bool = False,
    tile: int = 512,
    overlap: float = 0.25,
    tile_weights: str = "gaussian",
    batch_size: int = 1,
    device: str = "auto",
    backend: str = "auto",
    precision: str = "fp32",
    threads: int | None = None,
    save_probs: bool = False,
    masks: bool = False,
    quiet: bool = False,
    verbose: bool = False,
    min_size: int | None = None,
    keep_largest: str | Sequence[int | str] | None = None,
    fill_holes: str | Sequence[int | str] | bool | None = None,
    no_postprocessing: bool = False,
    overwrite: bool = False,
) -> tuple[list[Written], Path]:
    """Predict images, folders, glob patterns or videos with ``model`` (a run folder, ``.pt``
    or ``.onnx``) into ``out``, as ``unetlab predict MODEL INPUT... --out OUT`` does (same
    option names). Returns what was written per input and the legend's path.

    ``save_probs``: also ``NAME_probs.npy`` per image (class probabilities, float32
    ``K x H x W``); ``masks``: also one index mask per video frame in ``NAME_masks/``;
    ``quiet``: no progress bars; ``verbose``: a line per input; ``min_size``,
    ``keep_largest``, ``fill_holes`` and ``no_postprocessing`` choose the post-processing
    (default: the one stored with the model), as for :func:`evaluate`. Existing files in
    ``out`` are replaced only with ``overwrite``.
    """
    from unetlab.threads import configure_threads

    configure_threads(threads)  # before torch loads (the predictor imports it)
    from unetlab.inference.files import predict_files
    from unetlab.inference.inputs import discover_inputs
    from unetlab.inference.open import open_model
    from unetlab.inference.postprocessing import from_flags
    from unetlab.inference.tta import mode_from_flags

    specs = [inputs] if isinstance(inputs, str | Path) else list(inputs)
    found = discover_inputs(specs)
    predictor = open_model(
        model, device, precision, backend=backend, threads=threads, tile=tile,
        overlap=overlap, tile_weights=tile_weights, batch_size=batch_size,
        tta=mode_from_flags(tta, tta_rot90), progress=not quiet, threshold=threshold,
        postprocessing=from_flags(min_size, keep_largest, fill_holes, no_postprocessing),
    )  # fmt: skip
    steps = predictor.options.postprocessing
    if not quiet and steps.active:
        print(f"post-processing: {steps.describe(predictor.class_names)}")
    return predict_files(
        predictor, found, out, alpha, progress=not quiet, verbose=verbose,
        save_probs=save_probs, masks=masks, overwrite=overwrite,
    )  # fmt: skip


def _nested(values: Mapping[tuple[str, ...], Any]) -> dict[str, Any]:
    """``{("data", "root"): x}`` -> ``{"data": {"root": x}}``, leaving out None values."""
    nested: dict[str, Any] = {}
    for path, value in values.items():
        if value is None:
            continue
        node = nested
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return nested
