"""Progress output: a bar in a terminal, occasional plain lines (never ``\\r`` frames) in logs;
``evaluate`` shows progress, ``predict`` one bar for a folder and per-image lines only with
``-v``. Output captured by pytest is not a terminal, as a log file or a pipe is not."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unetlab.cli.main import main
from unetlab.progress import Progress

from test_evaluate import random_dataset, tiny_unet_checkpoint  # isort: skip

pytestmark = pytest.mark.usefixtures("one_thread")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_every_tenth_without_a_terminal() -> None:
    log = io.StringIO()
    with Progress(50, "images", "image", stream=log) as bar:
        for _ in range(50):
            bar.update(1)
    text = log.getvalue()
    assert "\r" not in text
    counts = [int(n) for n in re.findall(r"^images: (\d+)/50 image", text, re.MULTILINE)]
    assert counts == list(range(5, 51, 5))  # ceil(50 / 10) = 5 items apart, and the end
    assert "ETA" in text.splitlines()[0] and "ETA" not in text.splitlines()[-1]


def test_close_writes_the_last_count_and_unknown_totals_count_on() -> None:
    log = io.StringIO()
    with Progress(None, "clip.mp4", "frame", stream=log, every=4) as bar:
        for _ in range(10):
            bar.update(1)
    lines = log.getvalue().splitlines()
    assert [line.split(" frame")[0] for line in lines] == [
        "clip.mp4: 4", "clip.mp4: 8", "clip.mp4: 10"
    ]  # fmt: skip


def test_a_terminal_gets_a_bar_and_disabled_progress_writes_nothing() -> None:
    screen = Terminal()
    with Progress(3, "tiles", "tile", stream=screen) as bar:
        bar.update(3)
    assert "\r" in screen.getvalue() and "3/3" in screen.getvalue()  # tqdm's frames
    quiet = Terminal()
    with Progress(3, "tiles", stream=quiet, enabled=False) as bar:
        bar.update(3)
        assert bar.bar is None
    assert quiet.getvalue() == ""


def test_training_progress_is_plain_lines_every_log_every_steps(capsys) -> None:
    from unetlab.engine.runlog import Progress as RunProgress

    run = RunProgress(enabled=True, epochs=2, log_every=2)
    run.start_epoch(1, steps=5)
    for _ in range(5):
        run.step(loss=0.25, lr=1e-3)
    run.info("epoch 1 | val mIoU 0.5")
    run.end_epoch()
    captured = capsys.readouterr()
    assert "\r" not in captured.err + captured.out
    steps = re.findall(r"^epoch 1/2: (\d)/5 it", captured.err, re.MULTILINE)
    assert steps == ["2", "4", "5"]
    assert "loss 0.2500, lr 1.00e-03" in captured.err
    assert captured.out == "epoch 1 | val mIoU 0.5\n"


@pytest.mark.parametrize(("epochs", "budget", "label"), [
    (100_000, 20.0, "epoch 3 (20 min budget)"),   # a planned run: the clock ends it
    (40, 7.5, "epoch 3/40 (7.5 min budget)"),     # both limits: both shown
    (40, None, "epoch 3/40"),
])
def test_a_budgeted_run_shows_its_budget_not_a_sentinel_epoch_count(
    capsys, epochs, budget, label
) -> None:
    from unetlab.engine.runlog import Progress as RunProgress

    run = RunProgress(enabled=True, epochs=epochs, log_every=1, budget_minutes=budget)
    run.start_epoch(3, steps=1)
    run.step(loss=0.5, lr=1e-3)
    run.end_epoch()
    err = capsys.readouterr().err
    assert re.search(rf"^{re.escape(label)}: 1/1 it", err, re.MULTILINE), err
    assert "100000" not in err


def test_evaluate_shows_progress_in_a_log(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    tiny_unet_checkpoint(run / "checkpoints" / "best.pt")
    root = random_dataset(tmp_path / "data", n=3, size=(16, 16))
    assert main(["evaluate", str(run), "--data", str(root), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "\r" not in captured.err + captured.out
    counts = re.findall(r"^evaluate val: (\d)/3 image", captured.err, re.MULTILINE)
    assert counts == ["1", "2", "3"]
    assert main(["evaluate", str(run), "--data", str(root), "--quiet", "--overwrite"]) == 0
    assert "evaluate val" not in capsys.readouterr().err


def _images(folder: Path, count: int, shape: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for index in range(count):
        Image.fromarray(rng.integers(0, 256, shape, np.uint8)).save(folder / f"i{index}.png")


def test_predict_on_a_folder_shows_one_bar_and_per_image_lines_only_with_v(
    tmp_path, capsys
) -> None:
    run = tmp_path / "run"
    tiny_unet_checkpoint(run / "checkpoints" / "best.pt")
    _images(tmp_path / "in", 3, (96, 64, 3))  # 96 x 64 at --tile 32: 8 tiles or more each
    argv = ["predict", str(run), str(tmp_path / "in"), "--tile", "32", "--device", "cpu"]

    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    captured = capsys.readouterr()
    assert "\r" not in captured.err + captured.out
    assert re.findall(r"^images: (\d)/3 image", captured.err, re.MULTILINE) == ["1", "2", "3"]
    assert "tiles" not in captured.err  # the images' bar is the one bar
    assert "i0.png" not in captured.out and "3 input(s) predicted" in captured.out

    assert main([*argv, "--out", str(tmp_path / "b"), "-v"]) == 0
    printed = capsys.readouterr().out
    for index in range(3):
        assert f"{tmp_path / 'in' / f'i{index}.png'} (64x96; " in printed
        assert f"  -> {tmp_path / 'b' / f'i{index}_mask.png'}" in printed

    assert main([*argv, "--out", str(tmp_path / "c"), str(tmp_path / "in" / "i0.png")]) == 0
    assert "images: 3/3" in capsys.readouterr().err  # a repeated input is predicted once
    assert main(["predict", str(run), str(tmp_path / "in" / "i1.png"), "--tile", "32",
                 "--out", str(tmp_path / "d")]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "tiles: " in err and "images:" not in err and "\r" not in err  # one image: its tiles
