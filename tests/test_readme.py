"""Every code block of README.md runs, as written, so the README cannot rot.

The blocks run in README order in one folder, as a reader would run them (later blocks use what
earlier ones made: the demo data, ``runs/camvid``). ``unetlab ...`` commands run in this process
through the CLI's ``main`` (exit code 0 required); ``torchrun`` in a subprocess; Python blocks
with ``exec``. ``text`` blocks (folder layouts) are not code; a block without a language tag
fails ``test_every_block_says_what_it_is``, so a new block is never silently skipped.

What is changed before running, and why (the whole table; nothing else is):

- ``pip install ... &&`` and ``python -m pytest -q`` are dropped: the test runs in the installed
  environment, and inside the suite that command would start.
- ``unetlab demo`` gets ``--minutes 0.05``: seconds of training instead of a minute.
- ``path/to/dataset`` is the demo's data (``unetlab-demo/shapes``, made by the set-up block).
- ``../shared/datasets/NAME`` is a small view of that shared dataset (same folder layout,
  classes and image files, linked; split lists of 8 train / 2 val ids); blocks that need one
  skip with the reason when it is absent.
- Every training (``unetlab train``, ``torchrun ... train``, ``unetlab.train(``) gets
  :data:`TINY_TRAINING`: one step of one epoch on the CPU.
- ``pip install -e ".[web]"`` is dropped (the test environment has the extra); ``unetlab serve``
  starts as a subprocess on a free loopback port, must answer its page, and is stopped.
- ``bench`` gets ``--runs 2 --warmup 1``; ``torchrun`` starts 2 CPU processes, not 4, and the
  two-machine ``torchrun`` is not run (it needs a second machine).
- The inputs the tour names (``street.png``, ``frames/``, ``more/*.jpg``, ``drive.mp4``) are made
  in the folder from CamVid frames before the tour runs.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import SHARED_DATASETS

from unetlab.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

TINY_TRAINING = (
    "train.epochs=1",
    "train.max_steps_per_epoch=1",
    "train.time_limit_minutes=null",
    "train.device=cpu",
    "train.num_predictions=1",
    "data.batch_size=2",
    "data.num_workers=0",
)

SUBSTITUTIONS = (
    ('pip install torch==2.13.0 -e ".[dev]" && ', ""),
    ('pip install -e ".[web]"', ""),
    ("python -m pytest -q", ""),
    ("unetlab demo", "unetlab demo --minutes 0.05 --device cpu"),
    ("path/to/dataset", "unetlab-demo/shapes"),
    ("--input 3x360x480", "--input 3x360x480 --runs 2 --warmup 1"),
    ("--nproc_per_node=4", "--nproc_per_node=2"),
    ("unetlab.train(", f"unetlab.train(overrides={list(TINY_TRAINING)!r}, "),
)
NOT_RUN = {"--nnodes=2": "needs a second machine"}
VIEWS = {"camvid": ("VOC2007/JPEGImages", "VOC2007/SegmentationClass"),
         "isbi2012": ("images", "masks")}  # fmt: skip
SPLIT_DIRS = {"camvid": "VOC2007/ImageSets/Segmentation", "isbi2012": "splits"}


@dataclass(frozen=True)
class Block:
    language: str
    code: str
    line: int

    @property
    def name(self) -> str:
        return f"line{self.line}-{self.language or 'untagged'}"


def readme_blocks() -> list[Block]:
    text = README.read_text(encoding="utf-8")
    blocks = []
    for match in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        line = text[: match.start()].count("\n") + 1
        blocks.append(Block(match[1], match[2], line))
    return blocks


BLOCKS = [block for block in readme_blocks() if block.language in ("bash", "python")]


def test_every_block_says_what_it_is():
    blocks = readme_blocks()
    assert len(BLOCKS) >= 3
    assert all(block.language in ("bash", "python", "text") for block in blocks), [
        block.name for block in blocks if block.language not in ("bash", "python", "text")
    ]


# ---------------------------------------------------------------- the folder the blocks run in


def _dataset_view(name: str, target: Path) -> Path:
    """``target``: the shared dataset's files, linked, with split lists of 8 train / 2 val."""
    source = SHARED_DATASETS / name
    for folder in VIEWS[name]:
        (target / folder).parent.mkdir(parents=True, exist_ok=True)
        (target / folder).symlink_to(source / folder, target_is_directory=True)
    (target / "classes.txt").symlink_to(source / "classes.txt")
    splits = target / SPLIT_DIRS[name]
    splits.mkdir(parents=True)
    for split, count in (("train", 8), ("val", 2)):
        ids = (source / SPLIT_DIRS[name] / f"{split}.txt").read_text().split()[:count]
        (splits / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return target


def _tour_inputs(folder: Path, camvid: Path) -> None:
    """street.png, frames/, more/*.jpg and drive.mp4, from CamVid frames."""
    import cv2

    frames = sorted((camvid / "VOC2007" / "JPEGImages").iterdir())[:4]
    pictures = [cv2.imread(str(path)) for path in frames]
    cv2.imwrite(str(folder / "street.png"), pictures[0])
    (folder / "frames").mkdir()
    cv2.imwrite(str(folder / "frames" / "a.png"), pictures[1])
    (folder / "more").mkdir()
    cv2.imwrite(str(folder / "more" / "b.jpg"), pictures[2])
    height, width = pictures[0].shape[:2]
    writer = cv2.VideoWriter(
        str(folder / "drive.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5, (width, height)
    )
    for picture in pictures[:3]:
        writer.write(picture)
    writer.release()


@dataclass(frozen=True)
class Workspace:
    folder: Path  # where the blocks run
    views: Path  # the small views of the shared datasets


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    folder = tmp_path_factory.mktemp("readme")
    (folder / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    views = tmp_path_factory.mktemp("datasets")
    for name in VIEWS:
        if (SHARED_DATASETS / name).is_dir():
            _dataset_view(name, views / name)
    if (views / "camvid").is_dir():
        _tour_inputs(folder, views / "camvid")
    return Workspace(folder, views)


@pytest.fixture
def inside(workspace, monkeypatch) -> Workspace:
    monkeypatch.chdir(workspace.folder)
    return workspace


# ---------------------------------------------------------------- running a block


def prepared(block: Block, views: Path) -> str:
    """The block's code after the substitution table (module docstring)."""
    code = block.code
    for old, new in SUBSTITUTIONS:
        code = code.replace(old, new)
    for name in re.findall(r"\.\./shared/datasets/(\w+)", code):
        if not (views / name).is_dir():
            pytest.skip(f"real dataset '{name}' not found at {SHARED_DATASETS / name}")
    return code.replace("../shared/datasets/", f"{views}/")


def commands(code: str) -> list[list[str]]:
    """Shell lines (continuations joined, comments dropped, ``&&`` split) as argument lists."""
    joined = re.sub(r"\\\n\s*", " ", code)
    found = []
    for line in joined.splitlines():
        for part in line.split("&&"):
            argv = shlex.split(part, comments=True)
            if argv:
                found.append(argv)
    return found


def run_command(argv: list[str], folder: Path) -> None:
    if any(flag in argv for flag in NOT_RUN):
        return
    is_training = "train" in argv and argv[0] in ("unetlab", "torchrun")
    if is_training:
        tiny = TINY_TRAINING
        if "--resume" in argv:  # the tour's run finished its one epoch: resuming trains one more
            tiny = tuple("train.epochs=2" if item == "train.epochs=1" else item for item in tiny)
        argv = [*argv, *(f"--set={item}" for item in tiny)]
    if argv[:2] == ["unetlab", "serve"]:
        serve_once(argv[2:], folder)
    elif argv[0] == "unetlab":
        code = main(argv[1:])
        assert code == 0, f"{shlex.join(argv)} exited with {code}"
    elif argv[0] == "torchrun":
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
        done = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", *argv[1:]],
            cwd=folder, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    else:
        pytest.fail(f"no runner for README command {shlex.join(argv)!r}; add one to this test")


def serve_once(args: list[str], folder: Path) -> None:
    """Start ``unetlab serve ARGS`` on a free port, wait for its page, stop it."""
    import socket
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    server = subprocess.Popen(
        [sys.executable, "-m", "unetlab.cli.main", "serve", *args, "--port", str(port)],
        cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert server.poll() is None, f"unetlab serve exited: {server.stdout.read()[-3000:]}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
                    assert page.status == 200 and b"unetlab" in page.read().lower()
                    return
            except OSError:
                time.sleep(0.5)
        pytest.fail("unetlab serve did not answer within 300 s")
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.parametrize("block", BLOCKS, ids=[block.name for block in BLOCKS])
def test_readme_block_runs_as_written(block, inside):
    code = prepared(block, inside.views)
    if block.language == "python":
        exec(compile(code, f"README.md:{block.line}", "exec"), {"__name__": "__readme__"})
        return
    for argv in commands(code):
        run_command(argv, inside.folder)


def test_tour_left_what_the_readme_says(inside):
    """After the tour: the run folder, a portable config, predictions and the ONNX files."""
    import yaml

    folder = inside.folder
    run = folder / "runs" / "camvid"
    if not run.is_dir():
        pytest.skip("the tour did not run (no CamVid)")
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["root"] == str((inside.views / "camvid").resolve())
    assert saved["name"] == "camvid" and saved["out_dir"] == str((folder / "runs").resolve())
    predictions = folder / "predictions"
    for name in ("street_overlay.png", "street_mask.png", "a_mask.png", "b_mask.png"):
        assert (predictions / name).is_file(), sorted(p.name for p in predictions.iterdir())
    assert (folder / "camvid.onnx").is_file() and (folder / "camvid.int8.onnx").is_file()
    assert (run / "evaluation" / "val" / "report.json").is_file()
