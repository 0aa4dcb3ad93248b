"""The public API: ``import unetlab`` names, keywords named as the CLI's options, the engine's
old keywords still working with a warning, and ``--threads``."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
import torch

import unetlab
from unetlab.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def _run_python(code: str, **env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    environment.update(PYTHONPATH=str(ROOT), **env)
    done = subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True,
        timeout=300, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def test_every_public_name_resolves_and_the_package_import_is_cheap():
    for name in unetlab.__all__:
        assert getattr(unetlab, name) is not None, name
    assert unetlab.evaluate.__module__ == "unetlab.api"  # a function, not a submodule
    assert callable(unetlab.train) and callable(unetlab.evaluate)
    printed = _run_python(
        "import sys, unetlab; unetlab.load_config; unetlab.read_image; unetlab.train; "
        "print('torch' in sys.modules)"
    )
    assert printed == "False"


def _cli_option_names(command: click.Command) -> set[str]:
    names = set()
    for param in command.params:
        if isinstance(param, click.Option):
            primary = next(opt for opt in param.opts if opt.startswith("--"))  # not an alias
            names.add(primary.lstrip("-").replace("-", "_"))
    return names


def test_api_keywords_are_the_cli_option_names():
    """The reference is the click commands: each option of ``unetlab train``/``evaluate``/
    ``predict`` is a keyword of the same name (``--set`` is ``overrides``; ``--dry-run`` is
    ``dry_run()``)."""
    from unetlab.cli.evaluate import evaluate as evaluate_command
    from unetlab.cli.predict import predict as predict_command
    from unetlab.cli.train import train as train_command

    train_keywords = set(inspect.signature(unetlab.train).parameters)
    assert _cli_option_names(train_command) - {"set", "dry_run"} <= train_keywords
    assert "overrides" in train_keywords
    evaluate_keywords = set(inspect.signature(unetlab.evaluate).parameters)
    assert _cli_option_names(evaluate_command) <= evaluate_keywords
    assert {"out", "worst", "data"} <= evaluate_keywords
    predict_keywords = set(inspect.signature(unetlab.predict).parameters)
    assert _cli_option_names(predict_command) <= predict_keywords
    assert {"out", "alpha", "threads", "save_probs", "masks"} <= predict_keywords


def test_train_and_run_config_spell_out_their_shared_keywords():
    """The reference is the two signatures as they were written out by hand before the
    keywords had one owner (``RunOptions``): ``help()`` and notebooks still show each keyword
    with its default, and a misspelt one is refused as Python refuses one."""
    shared = dict.fromkeys(
        ["preset", "data", "model", "epochs", "batch_size", "device", "name", "out_dir",
         "overrides", "resume", "budget"]
    ) | {"overrides": ()}  # fmt: skip
    own = {unetlab.run_config: {}, unetlab.train: {"threads": None, "orientation": "auto"},
           unetlab.dry_run: {"orientation": "auto"}}
    for function, extra in own.items():
        parameters = inspect.signature(function).parameters
        config = parameters["config"]
        assert config.kind is config.POSITIONAL_OR_KEYWORD and config.default is None
        keywords = {n: p.default for n, p in parameters.items() if p.kind is p.KEYWORD_ONLY}
        assert keywords == shared | extra, function.__name__
    with pytest.raises(TypeError, match=r"run_config\(\) got an unexpected keyword .*'epoch'"):
        unetlab.run_config(preset="demo", epoch=3)


def _data_and_a_known_plan(tmp_path):
    """A tiny dataset and the config a stand-in planner returns for it (batch 3, not 4)."""
    from unetlab.data import make_shapes_dataset
    from unetlab.engine.config import load_config

    data = make_shapes_dataset(tmp_path / "shapes", n_train=4, n_val=2, size=32, seed=1)
    planned = load_config({"data": {"root": str(data), "patch_size": 32, "batch_size": 3},
                           "model": {"name": "unet", "options": {"base": 4, "depth": 2}},
                           "train": {"device": "cpu", "epochs": 7}})
    return data, planned


def test_dry_run_of_a_budget_with_data_alone_checks_the_plan_training_would_run(
    tmp_path, monkeypatch
):
    """``train(data=D, budget=B)`` plans first; its dry run must check that plan, not a default
    config with a time limit. The planner is replaced by one returning a known config."""
    import unetlab.api as api

    data, planned = _data_and_a_known_plan(tmp_path)
    calls = []

    def fake_plan(data_arg, budget, **kwargs):
        calls.append((str(data_arg), budget, list(kwargs["overrides"])))
        return planned, {"plan.yaml": "..."}

    monkeypatch.setattr(api, "planned_config", fake_plan)
    overrides = (o for o in ["train.epochs=5"])  # a generator: read by the plan and the config
    plan = unetlab.dry_run(data=str(data), budget="1m", overrides=overrides)
    assert calls == [(str(data), "1m", ["train.epochs=5"])]
    assert plan.config.data.batch_size == 3  # the plan's value, not the default 4
    assert plan.config.train.epochs == 5  # the override reached the config too


def test_data_alone_plans_a_default_budget_and_any_recipe_choice_does_not(tmp_path, monkeypatch):
    """``unetlab train --data D`` with nothing else is planned (20 minutes), not the generic
    GPU-sized defaults; naming a model, epochs, batch size or any ``--set`` keeps the config
    path (and a budget with them only sets the clock)."""
    import unetlab.api as api
    from unetlab.cli.main import main

    data, planned = _data_and_a_known_plan(tmp_path)
    calls = []

    def fake_plan(data_arg, budget, **kwargs):
        calls.append(budget)
        return planned, {"plan.yaml": "..."}

    monkeypatch.setattr(api, "planned_config", fake_plan)
    logged: list[str] = []
    cfg, files = api.training_config(data=str(data), log=logged.append)
    assert calls == ["20m"] and cfg.data.batch_size == 3 and files == {"plan.yaml": "..."}
    assert "no config, preset or --budget: planning a 20m run" in logged[0]
    chosen = [{"epochs": 2}, {"model": "unet"}, {"batch_size": 2},
              {"overrides": ["optim.lr=0.01"]}]
    for choice in chosen:
        cfg, files = api.training_config(data=str(data), log=logged.append, **choice)
        assert files == {} and cfg.model.options.get("base", 64) == 64  # the generic defaults
    assert calls == ["20m"]
    assert main(["train", "--data", str(data), "--dry-run"]) == 0  # the command line too
    assert calls == ["20m", "20m"]


def test_torchrun_processes_refuse_to_plan_alone(monkeypatch):
    """Under torchrun each process would probe and could plan another network: refused with
    the two commands that work, before any data is read."""
    import unetlab.api as api

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(unetlab.UnetlabError, match="torchrun cannot plan") as refused:
        api.training_config(data="does-not-exist")
    assert "unetlab plan DIR --budget 20m --out plan.yaml" in str(refused.value)
    monkeypatch.setenv("WORLD_SIZE", "1")
    with pytest.raises(unetlab.UnetlabError) as alone:  # alone it gets as far as the data
        api.training_config(data="does-not-exist")
    assert "torchrun" not in str(alone.value)


def test_evaluate_forwards_new_and_old_keywords(monkeypatch):
    import unetlab.engine.evaluate as engine_evaluate

    calls = []
    monkeypatch.setattr(engine_evaluate, "evaluate", lambda *a, **k: calls.append((a, k)))
    unetlab.evaluate("runs/x", data="data", out="o", worst=2, split="test")
    (args, kwargs), = calls
    assert args == ("runs/x", "data")
    assert kwargs["out_dir"] == "o" and kwargs["num_panels"] == 2 and kwargs["split"] == "test"
    calls.clear()
    with pytest.warns(DeprecationWarning) as caught:
        unetlab.evaluate("runs/x", data_root="data", out_dir="o", num_panels=3)
    assert sorted(str(w.message).split(")")[0] for w in caught) == [
        "evaluate(data_root=...", "evaluate(num_panels=...", "evaluate(out_dir=..."
    ]  # fmt: skip
    (args, kwargs), = calls
    assert kwargs["num_panels"] == 3
    calls.clear()
    with pytest.warns(DeprecationWarning, match=r"evaluate\(panels=...\) is now evaluate\(worst="):
        unetlab.evaluate("runs/x", data="data", out="o", panels=3)
    (args, kwargs), = calls
    assert args == ("runs/x", "data") and kwargs["out_dir"] == "o" and kwargs["num_panels"] == 3
    with pytest.raises(TypeError, match="both data_root= and data="), pytest.warns(
        DeprecationWarning
    ):
        unetlab.evaluate("runs/x", data="a", data_root="b")
    with pytest.raises(TypeError, match="unexpected keyword"):
        unetlab.evaluate("runs/x", data="a", colour=1)


def test_run_config_equals_the_cli_layers(tmp_path):
    """``unetlab.run_config`` (what ``unetlab.train`` trains) against ``load_config`` with the
    layers spelt out by hand."""
    from unetlab.engine.config import load_config

    cfg = unetlab.run_config(
        preset="demo", data=tmp_path, model="mobilenet_unet", epochs=3, batch_size=5,
        device="cpu", name="n", out_dir=tmp_path / "runs", overrides=["optim.lr=0.02"],
    )  # fmt: skip
    expected = load_config(
        preset="demo",
        options={"data": {"root": str(tmp_path), "batch_size": 5}, "model": {"name":
                 "mobilenet_unet"}, "train": {"epochs": 3, "device": "cpu"}, "name": "n",
                 "out_dir": str(tmp_path / "runs")},
        overrides=["optim.lr=0.02"],
    )  # fmt: skip
    assert cfg.to_dict() == expected.to_dict() and cfg.notes == expected.notes


# ---------------------------------------------------------------- threads


def test_configure_threads_sets_torch_threads_and_a_passive_wait_policy():
    printed = _run_python(
        "from unetlab.threads import configure_threads; configure_threads(2); import os, torch;"
        " print(torch.get_num_threads(), os.environ['OMP_WAIT_POLICY'])",
        OMP_NUM_THREADS="1",
    )
    assert printed == "2 PASSIVE"
    printed = _run_python(  # a policy the user chose is kept
        "from unetlab.threads import configure_threads; configure_threads(); import os;"
        " print(os.environ['OMP_WAIT_POLICY'])",
        OMP_WAIT_POLICY="ACTIVE",
    )
    assert printed == "ACTIVE"


def test_threads_option_applies_before_the_command_runs(capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))  # restored
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        code = main(["train", "--threads", "2", "--data", "does-not-exist", "--dry-run"])
        assert code == 2 and torch.get_num_threads() == 2  # set, then the data was checked
    finally:
        torch.set_num_threads(before)
    assert main(["train", "--threads", "0", "--dry-run"]) == 2
    assert "--threads" in capsys.readouterr().err
    with pytest.raises(unetlab.UnetlabError, match="whole number"):
        unetlab.configure_threads(0)
