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

import functools
import inspect
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar, cast

from unetlab.errors import UnetlabError

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from unetlab.engine.config import RunConfig
    from unetlab.engine.dryrun import RunPlan
    from unetlab.engine.evaluate import EvaluationReport
    from unetlab.engine.trainer import RunResult
    from unetlab.inference.files import Written


class RunOptions(TypedDict, total=False):
    """The keywords of :func:`run_config`, shared by :func:`train` and :func:`dry_run`, each
    named as the ``unetlab train`` option it stands for (``overrides`` is ``--set``). Left
    out, a keyword is None (``overrides``: none); the functions' signatures spell them out."""

    preset: str | None
    data: str | Path | None
    model: str | None
    epochs: int | None
    batch_size: int | None
    device: str | None
    name: str | None
    out_dir: str | Path | None
    overrides: Iterable[str]
    resume: str | Path | None
    budget: str | float | None


_RUN_OPTION_DEFAULTS: dict[str, Any] = {
    **dict.fromkeys(RunOptions.__annotations__),
    "overrides": (),
}
"""What a keyword of :class:`RunOptions` is when left out."""

_Function = TypeVar("_Function", bound=Callable[..., Any])


def _takes_run_options(function: _Function) -> _Function:
    """``function(..., **options: Unpack[RunOptions])`` with the signature ``help()``, notebooks
    and ``inspect`` show spelt out (each keyword of :class:`RunOptions`, its type and default),
    and a keyword it does not take refused as Python refuses one."""
    own = inspect.signature(function)
    shared = [
        inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, default=_RUN_OPTION_DEFAULTS[name],
            annotation=getattr(hint, "__forward_arg__", hint),
        )
        for name, hint in RunOptions.__annotations__.items()
    ]  # fmt: skip
    positional = [p for p in own.parameters.values() if p.kind < p.KEYWORD_ONLY]
    keywords = [p for p in own.parameters.values() if p.kind is p.KEYWORD_ONLY]
    signature = own.replace(parameters=[*positional, *shared, *keywords])

    @functools.wraps(function)
    def checked(*args: Any, **kwargs: Any) -> Any:
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{function.__name__}() {exc}") from None
        return function(*args, **kwargs)

    checked.__signature__ = signature  # type: ignore[attr-defined]
    return cast(_Function, checked)


@_takes_run_options
def run_config(
    config: RunConfig | Mapping[str, Any] | str | Path | None = None,
    **options: Unpack[RunOptions],
) -> RunConfig:
    """The configuration ``unetlab train`` builds from the same arguments: defaults < preset
    < ``config`` (a YAML file, a dict or a :class:`RunConfig`) < the keywords < ``overrides``
    (``"section.field=value"``); with ``resume``, the run's own ``config.yaml``. ``budget``
    (``"20m"``, or minutes) makes the clock the run's only limit (see :func:`planned_config`
    for a budget with no config). The keywords: :class:`RunOptions`."""
    from unetlab.engine.config import UNTIL_THE_CLOCK, RunConfig, load_config
    from unetlab.engine.trainer import run_dir_of

    given = {**_RUN_OPTION_DEFAULTS, **options}
    overrides = given["overrides"]
    if isinstance(overrides, str):
        overrides = [overrides]
    values = _nested(
        {
            ("data", "root"): None if given["data"] is None else str(given["data"]),
            ("model", "name"): given["model"],
            ("train", "epochs"): given["epochs"],
            ("data", "batch_size"): given["batch_size"],
            ("train", "device"): given["device"],
            ("name",): given["name"],
            ("out_dir",): None if given["out_dir"] is None else str(given["out_dir"]),
        }
    )
    if given["budget"] is not None:
        from unetlab.plan import parse_budget

        train = values.setdefault("train", {})
        train["time_limit_minutes"] = parse_budget(given["budget"]) / 60.0
        train.setdefault("epochs", UNTIL_THE_CLOCK)
    preset = given["preset"]
    if given["resume"] is not None:
        if config is not None or preset is not None:
            raise UnetlabError(
                "--resume continues a run with its own config.yaml; it cannot be combined "
                "with a CONFIG file or --preset",
                given["resume"],
                "leave out CONFIG/--preset (use --set or --epochs to change fields)",
            )
        config = run_dir_of(given["resume"]) / "config.yaml"
    if isinstance(config, RunConfig):
        if not (preset or values or overrides):
            return config
        config = config.to_dict()
    return load_config(config, preset=preset, options=values, overrides=list(overrides))


@_takes_run_options
def training_config(
    config: RunConfig | Mapping[str, Any] | str | Path | None = None,
    *,
    orientation: str = "auto",
    log: Callable[[str], None] = print,
    **options: Unpack[RunOptions],
) -> tuple[RunConfig, dict[str, str]]:
    """The configuration :func:`train` (and ``unetlab train``) trains, and the files for its
    run folder: :func:`run_config`'s, or with a ``budget`` and ``data`` alone (no config,
    preset or resume) the run :func:`planned_config` plans (``plan.yaml``)."""
    extra_files: dict[str, str] = {}
    given = options.get("overrides")
    if given is not None and not isinstance(given, str):
        options = {**options, "overrides": list(given)}  # read twice: by the plan and the config
    budget = options.get("budget")
    planned = config is None and options.get("preset") is None and options.get("resume") is None
    if planned and budget is None and _only_data_given(options):
        budget = DEFAULT_BUDGET
        log(
            f"no config, preset or --budget: planning a {DEFAULT_BUDGET} run for this dataset "
            "and this machine (--budget sets the minutes; a preset or a config, a fixed recipe)"
        )
    if budget is not None and planned:
        config, extra_files = planned_config(
            options.get("data"), budget, device=options.get("device"), orientation=orientation,
            overrides=options.get("overrides"), log=log,
        )  # fmt: skip
        options = {**options, "budget": None}  # the plan's limit leaves out the planning time
    return run_config(config, **options), extra_files


DEFAULT_BUDGET = "20m"
"""The budget ``unetlab train --data DIR`` plans for when nothing else is said: a generic
default network (base 64, 31 M parameters) is sized for a GPU, and on a CPU ran two epochs in
15 minutes on the horses (docs/benchmarks.md)."""


def _only_data_given(options: Mapping[str, Any]) -> bool:
    """Whether the user chose nothing about the recipe (no model, epochs, batch size or
    ``--set``): then a plan, not the generic defaults, decides it."""
    chosen = ("model", "epochs", "batch_size")
    return all(options.get(key) is None for key in chosen) and not options.get("overrides")


@_takes_run_options
def train(
    config: RunConfig | Mapping[str, Any] | str | Path | None = None,
    *,
    threads: int | None = None,
    orientation: str = "auto",
    **options: Unpack[RunOptions],
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
    cfg, extra_files = training_config(config, orientation=orientation, **options)
    return run_training(cfg, resume=options.get("resume"), extra_files=extra_files)


def planned_config(
    data: str | Path | None,
    budget: str | float,
    *,
    device: str | None = None,
    orientation: str = "auto",
    overrides: Iterable[str] | str | None = None,
    log: Callable[[str], None] = print,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Plan a run of ``budget`` for the dataset ``data`` on this machine: (its config, and the
    files for the run folder: ``plan.yaml`` with one reason per choice). The splits come from
    ``overrides`` (``data.train_split=...``, ``data.val_split=...``) when they name them, so
    the plan measures the data it will train and validate on."""
    from unetlab.engine.distributed import launched_world_size
    from unetlab.plan import parse_budget, plan_dataset, plan_to_yaml

    if launched_world_size() > 1:  # each process would probe and plan alone
        raise UnetlabError(
            "a run started by torchrun cannot plan itself: every process would time its own "
            "steps and could choose a different network",
            data,
            "plan once, then train the plan: unetlab plan DIR --budget 20m --out plan.yaml; "
            "torchrun --nproc_per_node=N -m unetlab.cli.main train plan.yaml",
        )
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


@_takes_run_options
def dry_run(
    config: RunConfig | Mapping[str, Any] | str | Path | None = None,
    *,
    orientation: str = "auto",
    **options: Unpack[RunOptions],
) -> RunPlan:
    """What :func:`train` with the same arguments would do, checked without training or
    writing anything (``unetlab train --dry-run``); raises the error training would. With a
    ``budget`` and ``data`` alone it plans first, as training would (the plan probes the
    machine for some seconds)."""
    from unetlab.engine.dryrun import plan_run

    cfg, _ = training_config(config, orientation=orientation, **options)
    return plan_run(cfg, resume=options.get("resume"))


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
