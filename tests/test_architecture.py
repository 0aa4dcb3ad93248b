"""The package's dependency order (docs/architecture.md): every import, at module level or
inside a function, points to the same subpackage or one listed before it, so there is no import
cycle between subpackages, hidden by a lazy import or not."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "unetlab"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"

LAYERS = [
    "base",  # unetlab/__init__.py, errors.py, _lazy.py
    "fs",
    "data",
    "models",
    "metrics",
    "presets",
    "artifacts",
    "inference",
    "losses",
    "export",
    "engine",
    "plan",
    "serve",
    "api",  # unetlab/api.py: the public functions over everything below
    "cli",
]
RANK = {name: rank for rank, name in enumerate(LAYERS)}


def layer_of(module: str) -> str:
    """``unetlab.x.y`` -> ``x`` for subpackages; the top-level modules are ``base``."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] == "api":
        return "api"
    if len(parts) == 1 or (PACKAGE / f"{parts[1]}.py").is_file():
        return "base"
    return parts[1]


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every ``unetlab`` module ``path`` imports (any nesting), with the line; relative
    imports resolved, and lazy-export tables (``"name": "submodule"``) of ``__init__`` files."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.append((node.lineno, target))
    return [(line, name) for line, name in found if name.split(".")[0] == "unetlab"]


def all_edges() -> list[tuple[str, int, str, str]]:
    edges = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = layer_of(module_name(path))
        for line, target in imported_modules(path):
            edges.append((f"{path.relative_to(PACKAGE.parent)}:{line}", line, source, target))
    return edges


def test_every_subpackage_has_a_layer() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(LAYERS) - {"base", "api"}  # api: a module, not a package


def test_imports_only_point_down_the_dependency_order() -> None:
    upward = [
        f"{where}: {source} imports {target}"
        for where, _, source, target in all_edges()
        if RANK[layer_of(target)] > RANK[source]
    ]
    assert not upward, "\n".join(upward)


def test_the_checker_sees_lazy_imports(tmp_path: Path) -> None:
    """The walk finds imports inside functions and relative ones (or the test above is blind)."""
    sample = PACKAGE / "artifacts" / "read.py"
    targets = {name for _, name in imported_modules(sample)}
    assert "unetlab.artifacts.checkpoint" in {t for t in targets} | {
        t + "." + "checkpoint" for t in targets
    }
    assert "unetlab.artifacts.geometry" in targets  # imported inside load_network


def test_docs_draw_the_same_order() -> None:
    text = DOCS.read_text()
    match = re.search(r"```text\n(?P<order>[^`]*?)```", text)
    assert match, "docs/architecture.md has no dependency-order block"
    drawn = re.findall(r"^\s*([a-z_]+)\b", match.group("order"), flags=re.MULTILINE)
    assert drawn == LAYERS


def torch_load_calls(path: Path) -> list[int]:
    """Lines of ``torch.load(...)`` calls in a file."""
    return [
        node.lineno
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "load"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "torch"
    ]


def test_checkpoint_reading_lives_in_artifacts_only() -> None:
    """Only unetlab.artifacts.checkpoint calls torch.load for checkpoints (the other call reads
    an encoder's pretrained ImageNet weights); both with weights_only=True."""
    calls = {
        str(path.relative_to(PACKAGE)): lines
        for path in PACKAGE.rglob("*.py")
        if (lines := torch_load_calls(path))
    }
    assert sorted(calls) == ["artifacts/checkpoint.py", "models/pretrained.py"], calls
    for name in calls:
        assert "weights_only=True" in (PACKAGE / name).read_text()
