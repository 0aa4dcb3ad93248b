"""Docs that cannot drift: the config reference page, the example config, error hints,
``unetlab summary`` listing model options."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from unetlab.engine.config import RunConfig, load_config
from unetlab.engine.config_reference import render

ROOT = Path(__file__).resolve().parents[1]


def test_config_reference_is_up_to_date():
    page = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    assert page == render(), (
        "docs/config.md is out of date: run "
        "'python -m unetlab.engine.config_reference docs/config.md'"
    )


def _fields(model, prefix=""):
    from unetlab.engine.config import _submodel

    for name, info in model.model_fields.items():
        sub = _submodel(info.annotation)
        yield f"{prefix}{name}", info
        if sub is not None:
            yield from _fields(sub, f"{prefix}{name}.")


def test_reference_lists_every_field_with_its_description():
    from unetlab.engine.config import _submodel

    page = render()
    sections = dict(re.findall(r"^## (.+?)\n(.*?)(?=^## |\Z)", page, re.MULTILINE | re.DOTALL))
    for dotted, info in _fields(RunConfig):
        if _submodel(info.annotation) is not None:
            assert f"`{dotted}`" in sections, dotted  # a section of its own
            continue
        section, _, field = dotted.rpartition(".")
        assert info.description, f"{dotted} has no description (a string under the field)"
        assert f"| `{field}` |" in sections[f"`{section}`" if section else "Top level"], dotted


def test_example_config_loads_and_uses_every_section():
    path = ROOT / "examples" / "config.yaml"
    raw = yaml.safe_load(path.read_text())
    cfg = load_config(path)
    assert set(raw) >= {"data", "model", "loss", "optim", "schedule", "train"}
    assert cfg.data.root == "unetlab-demo/shapes"  # what 'unetlab demo' makes
    assert raw["data"]["augment"] and cfg.model.options == {"base": 16, "depth": 3,
                                                            "padding": "same"}  # fmt: skip


def test_config_errors_point_at_the_reference_page(tmp_path):
    import pytest

    from unetlab.errors import UnetlabError

    with pytest.raises(UnetlabError) as info:
        load_config(overrides=["optim.learning_rate=1"])
    assert "docs/config.md" in info.value.hint and "engine/config.py" not in info.value.hint
    assert (ROOT / "docs" / "config.md").is_file()


def test_tensorboard_extra_is_declared():
    import pytest

    tomllib = pytest.importorskip("tomllib")

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert any(r.startswith("tensorboard") for r in project["optional-dependencies"]["tensorboard"])


def test_summary_lists_the_model_options(capsys):
    from unetlab.cli.main import main
    from unetlab.models import list_models, model_options

    assert main(["summary", "unet", "--input", "3x64x64", "-o", "base=4"]) == 0
    printed = capsys.readouterr().out
    expected = ", ".join(f"{k}={v!r}" for k, v in model_options("unet").items())
    assert f"options: {expected}" in printed and "depth=4" in printed
    assert main(["summary"]) == 0
    listing = capsys.readouterr().out
    for name in list_models():
        assert f"{name}: " in listing


def test_config_reference_tool_help_writes_nothing_and_keeps_foreign_files(tmp_path, monkeypatch,
                                                                           capsys):
    import pytest

    from unetlab.engine.config_reference import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_help:
        main(["--help"])
    assert exit_help.value.code == 0 and "usage:" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []  # no file named "--help"
    foreign = tmp_path / "notes.md"
    foreign.write_text("my own notes\n")
    with pytest.raises(SystemExit) as refused:
        main([str(foreign)])
    assert refused.value.code == 2 and "not a generated config reference" in capsys.readouterr().err
    assert foreign.read_text() == "my own notes\n"
    page = tmp_path / "config.md"
    assert main([str(page)]) == 0 and page.read_text() == render()
    page.write_text(render().replace("Run configuration", "Old run configuration"))
    assert main([str(page)]) == 0 and page.read_text() == render()  # its own page: replaced
