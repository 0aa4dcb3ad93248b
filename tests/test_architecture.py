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


# ------------------------------------------------------------ one reader of model metadata

ONNX_METADATA_ACCESS = {"metadata_props", "custom_metadata_map", "get_modelmeta"}
"""How an ``.onnx`` file's metadata is reached (onnx protos, ONNX Runtime sessions)."""
METADATA_READERS = {"load_checkpoint", "read_metadata"}
"""The functions that hand out a checkpoint dict or an export's raw metadata dict."""
RESUMING = {"engine/trainer.py", "engine/runfolder.py"}
"""Modules allowed to load a checkpoint: the trainer resumes from the training state it wrote
(optimizer, counters, RNG ...), and the run folder checks that best.pt holds the best epoch
last.pt names; they read no model-card key (the card is the artifacts' job)."""
RESUME_KEYS = {
    "state_dict", "optimizer", "scaler", "epoch", "global_step", "position", "scheduler",
    "history", "early_stopping", "rng", "path", "best_metric",
}  # fmt: skip


def called_name(node: ast.Call) -> str | None:
    func = node.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)


def metadata_reads(source: str) -> list[str]:
    """Where ``source`` reads model metadata itself: ONNX metadata properties, the key the card
    is stored under, or a call that returns a checkpoint dict or raw export metadata."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in ONNX_METADATA_ACCESS:
            found.append(f"{node.lineno}: .{node.attr}")
        elif isinstance(node, ast.Name) and node.id == "METADATA_KEY":
            found.append(f"{node.lineno}: METADATA_KEY")
        elif isinstance(node, ast.Call) and called_name(node) in METADATA_READERS:
            found.append(f"{node.lineno}: {called_name(node)}()")
    return found


def checkpoint_keys_read(source: str) -> set[str]:
    """String keys read (``x["key"]``, ``x.get("key")``) from a name ``checkpoint`` or straight
    from a ``load_checkpoint(...)`` call."""

    def is_checkpoint(node: ast.expr) -> bool:
        if isinstance(node, ast.Name):
            return node.id == "checkpoint"
        return isinstance(node, ast.Call) and called_name(node) == "load_checkpoint"

    keys = set()
    for node in ast.walk(ast.parse(source)):
        key: ast.expr | None = None
        if isinstance(node, ast.Subscript) and is_checkpoint(node.value):
            key = node.slice
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and is_checkpoint(node.func.value)
            and node.args
        ):
            key = node.args[0]
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            keys.add(key.value)
    return keys


def test_only_artifacts_read_checkpoint_and_export_metadata() -> None:
    """Model cards (class names, colours, normalisation, geometry, threshold, training record)
    come from unetlab.artifacts only: no other module opens a checkpoint dict or an export's
    metadata to read them, so predict, evaluate, bench, export and the page cannot disagree."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = str(path.relative_to(PACKAGE))
        if name.startswith("artifacts/"):
            continue
        reads = metadata_reads(path.read_text())
        if name in RESUMING:
            reads = [r for r in reads if not r.endswith("load_checkpoint()")]
        offenders += [f"unetlab/{name}:{read}" for read in reads]
    assert not offenders, "\n".join(offenders)


def test_the_trainer_reads_only_its_resume_state() -> None:
    for name in RESUMING:
        keys = checkpoint_keys_read((PACKAGE / name).read_text())
        assert keys and keys <= RESUME_KEYS, sorted(keys - RESUME_KEYS)


def test_the_metadata_checker_sees_each_kind_of_read() -> None:
    """The walk is not blind: each way of reading metadata in a sample is found."""
    sample = (
        "props = {p.key: p.value for p in onnx.load(path).metadata_props}\n"
        "meta = session.get_modelmeta().custom_metadata_map[METADATA_KEY]\n"
        "names = checkpoint.load_checkpoint(path)['data']['class_names']\n"
        "card = read_metadata(path)\n"
    )
    kinds = {read.split(": ", 1)[1] for read in metadata_reads(sample)}
    assert kinds == {
        ".metadata_props", ".get_modelmeta", ".custom_metadata_map", "METADATA_KEY",
        "load_checkpoint()", "read_metadata()",
    }  # fmt: skip
    assert checkpoint_keys_read("load_checkpoint(p)['data']\ncheckpoint.get('model')\n") == {
        "data",
        "model",
    }
