"""Data safety (issue 10): nothing lost, nothing overwritten, every failure explained.

Two parts. First one test per principle, through the real command in a real process, each
checking the files on disk afterwards (checksums of what must not change, modes under a set
umask, best.pt/last.pt agreement), the exit code and the message; kill tests use real SIGKILL
at an exact instant (the child blocks at a named pause point, ``unetlab.fs.testpoint``).
Then every case the issue lists, most through ``main(argv)`` in process (fast).
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_bad_inputs import SIZE, TRAIN_OPTIONS, make_checkpoint, make_dataset, save_mask

from unetlab.cli.main import main
from unetlab.data.io import read_image, read_mask
from unetlab.engine.checkpoint import load_checkpoint
from unetlab.fs.names import unique_names

TESTS = Path(__file__).parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
ENV["PYTHONPATH"] = os.pathsep.join([str(TESTS.parent), ENV.get("PYTHONPATH", "")])


# ---------------------------------------------------------------- helpers


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def digests(folder: Path) -> dict[str, str]:
    """name -> checksum of every file under ``folder`` (what must not change)."""
    return {str(p.relative_to(folder)): digest(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def unetlab(args: list[str], cwd: Path, umask: int | None = None, **env: str):
    """The real command in a child process (``FAULT_*`` in ``env``: see fs_faults.py)."""
    script = [str(TESTS / "fs_faults.py")] if any(k.startswith("FAULT_") for k in env) else [
        "-m", "unetlab.cli.main"
    ]
    return subprocess.run(
        [sys.executable, *script, *args],
        cwd=cwd,
        env={**ENV, **env},
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
    )


def start_paused(args: list[str], cwd: Path, point: str) -> tuple[subprocess.Popen, Path]:
    """Start ``unetlab ARGS`` and wait until it blocks at the pause point ``point``."""
    marker = cwd / f"paused-{time.monotonic_ns()}"
    process = subprocess.Popen(
        [sys.executable, "-m", "unetlab.cli.main", *args],
        cwd=cwd,
        env={**ENV, "UNETLAB_PAUSE_AT": point, "UNETLAB_PAUSE_FILE": str(marker)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not marker.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"never reached {point}:\n{process.stdout.read()}")
        time.sleep(0.05)
    return process, marker


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL


def run_main(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def one_paragraph_error(text: str, *needles: str) -> None:
    """The user-facing form: 'error: PATH: what' + 'What to do', no traceback."""
    assert "error: " in text, text
    assert "Traceback" not in text and "unexpected" not in text, text
    for needle in needles:
        assert needle in text, f"{needle!r} not in:\n{text}"


def image_file(path: Path, value: int = 100, size: int = SIZE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("model") / "model.pt")


def predict_args(model: Path, out: Path, *inputs: Path, extra: tuple[str, ...] = ()) -> list[str]:
    return ["predict", str(model), *map(str, inputs), "--out", str(out), "--device", "cpu",
            "--quiet", *extra]


# ================================================================ the principles


def test_principle1_never_overwrites_what_it_did_not_create(tmp_path, checkpoint):
    """predict --out <the input folder>: the user's cell_mask.png survives; with --overwrite it
    is replaced, but an output may never replace an input; colliding stems get distinct
    outputs and the mapping is printed."""
    folder = tmp_path / "cells"
    image_file(folder / "cell.png")
    user_mask = folder / "cell_mask.png"
    save_mask(user_mask, np.eye(SIZE, dtype=np.uint8))
    before = digests(folder)

    refused = unetlab(predict_args(checkpoint, folder, folder / "cell.png"), tmp_path)
    assert refused.returncode == 2
    one_paragraph_error(refused.stderr, "cell_mask.png", "--overwrite")
    assert digests(folder) == before  # nothing written, nothing replaced

    # an output that is an input is refused even with --overwrite (it would be read and lost)
    inputs = (folder / "cell.png", user_mask)
    clash = unetlab(predict_args(checkpoint, folder, *inputs, extra=("--overwrite",)), tmp_path)
    assert clash.returncode == 2
    one_paragraph_error(clash.stderr, "would replace an input")
    assert digests(folder) == before

    # stems a, a, a_2 (a.png, a.jpg, a_2.png) -> three distinct output names
    mixed = tmp_path / "mixed"
    inputs = (image_file(mixed / "a.png", 1), image_file(mixed / "a.jpg", 2),
              image_file(mixed / "a_2.png", 3))
    done = unetlab(predict_args(checkpoint, tmp_path / "out", *inputs), tmp_path)
    assert done.returncode == 0, done.stderr
    masks = sorted(p.name for p in (tmp_path / "out").glob("*_mask.png"))
    assert masks == ["a_2_mask.png", "a_3_mask.png", "a_mask.png"]
    lines = done.stdout.splitlines()
    jpg = next(i for i, line in enumerate(lines) if line.startswith(str(inputs[1])))
    assert lines[jpg + 1].strip() == f"-> {tmp_path / 'out' / 'a_3_mask.png'}"  # the mapping


def test_principle2_atomic_writes_with_the_users_umask(tmp_path, checkpoint):
    """Masks, overlays, legend (predict) and the export honour umask 027 (0640, not mkstemp's
    0600); SIGKILL just before an export replaces a good file leaves that file intact."""
    out = tmp_path / "out"
    done = unetlab(predict_args(checkpoint, out, image_file(tmp_path / "x.png")), tmp_path,
                   umask=0o027)
    assert done.returncode == 0, done.stderr
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
    assert modes == {"x_mask.png": 0o640, "x_overlay.png": 0o640, "legend.png": 0o640}

    onnx = pytest.importorskip("onnx")
    target = tmp_path / "model.onnx"
    first = unetlab(["export", str(checkpoint), "--out", str(target)], tmp_path, umask=0o022)
    assert first.returncode == 0, first.stderr
    assert target.stat().st_mode & 0o777 == 0o644
    good = digest(target)
    again = unetlab(["export", str(checkpoint), "--out", str(target)], tmp_path)
    assert again.returncode == 2 and "--overwrite" in again.stderr  # not without consent
    process, _ = start_paused(
        ["export", str(checkpoint), "--out", str(target), "--overwrite"],
        tmp_path,
        "before-commit:model.onnx",  # the new file is complete, the rename not yet done
    )
    kill(process)
    assert digest(target) == good
    onnx.checker.check_model(onnx.load(str(target)))
    # the dead writer's temp file is cleaned up by the next export of that file
    assert unetlab(["export", str(checkpoint), "--out", str(target), "--overwrite"],
                   tmp_path).returncode == 0
    assert sorted(p.name for p in tmp_path.glob(".model.onnx*")) == []


def test_principle3_one_process_per_run_and_best_agrees_with_last(tmp_path):
    """Two trains with one --name at once get two folders (NAME, NAME-2), never one; a second
    process that targets the same folder (a resume of the running run) is refused naming the
    owner's PID and host; SIGKILL between last.pt and best.pt leaves them disagreeing; resume
    names the stale lock, repairs best.pt from last.pt and the run ends with best.pt holding the
    epoch last.pt says is best."""
    import socket

    data = make_dataset(tmp_path / "ds")
    run = tmp_path / "runs" / "same"
    args = ["train", "--data", str(data), "--out-dir", str(tmp_path / "runs"), *TRAIN_OPTIONS,
            "--name", "same", "--epochs", "2", "--set", "train.num_predictions=0"]
    first, _ = start_paused(args, tmp_path, "between-last-and-best")  # epoch 1 improved
    before = run_files(run)

    second = unetlab(args, tmp_path)  # the same command while the first is running
    assert second.returncode == 0, second.stdout + second.stderr
    sibling = tmp_path / "runs" / "same-2"
    assert load_checkpoint(sibling / "checkpoints" / "last.pt")["epoch"] == 2
    assert load_checkpoint(sibling / "checkpoints" / "best.pt")["epoch"] in (1, 2)
    assert run_files(run) == before  # nothing of the second run in the first one's folder

    busy = unetlab(["train", "--resume", str(run), "--epochs", "3"], tmp_path)
    assert busy.returncode == 2
    one_paragraph_error(busy.stderr, str(run), f"in use by process {first.pid}",
                        f"on host {socket.gethostname()}")
    assert run_files(run) == before
    kill(first)

    last, best = run / "checkpoints" / "last.pt", run / "checkpoints" / "best.pt"
    before = load_checkpoint(last)
    assert before["epoch"] == 1 and before["early_stopping"]["best_epoch"] == 1
    assert not best.exists()  # the disagreement a kill leaves: last.pt claims a best.pt
    assert (run / ".unetlab.lock").exists()  # left by the dead process

    resumed = unetlab(["train", "--resume", str(run), "--epochs", "3"], tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"process {first.pid}" in resumed.stdout and "no longer running" in resumed.stdout
    assert "best.pt rewritten from last.pt" in resumed.stdout
    last_after, best_after = load_checkpoint(last), load_checkpoint(best)
    assert last_after["epoch"] == 3
    held = best_after["epoch"]
    assert held == last_after["early_stopping"]["best_epoch"]
    assert best_after["best_metric"] == last_after["early_stopping"]["best"]
    if held == 1:  # the repaired file holds exactly the weights last.pt had at epoch 1
        for key, value in before["state_dict"].items():
            assert torch.equal(best_after["state_dict"][key], value)
    assert not (run / ".unetlab.lock").exists()


def run_files(run: Path) -> dict[str, str]:
    """:func:`digests` of a run folder, without TensorBoard's event files (a paused process's
    writer thread may still flush them)."""
    return {name: value for name, value in digests(run).items()
            if not name.startswith("tensorboard")}


def test_new_run_folders_are_claimed_exclusively(tmp_path, capsys):
    """Eight threads asking for one name at once get eight folders (NAME, NAME-2 ... NAME-8),
    each created by the call that returned it; a dry run only names the next one; a run that
    fails before writing anything leaves no folder behind (the next try gets the same name)."""
    import threading

    from unetlab.engine.config import load_config
    from unetlab.engine.trainer import new_run_dir

    data = make_dataset(tmp_path / "ds")
    cfg = load_config(overrides=[f"data.root={data}", f"out_dir={tmp_path / 'runs'}",
                                 "name=same"])
    start, found = threading.Barrier(8), []

    def claim() -> None:
        start.wait()
        found.append(new_run_dir(cfg))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected = {"same", *(f"same-{n}" for n in range(2, 9))}
    assert {p.name for p in found} == expected and len(found) == 8
    assert {p.name for p in (tmp_path / "runs").iterdir()} == expected
    assert new_run_dir(cfg, claim=False).name == "same-9"
    assert not (tmp_path / "runs" / "same-9").exists()

    (data / "splits" / "val.txt").write_text("missing_id\n")
    code, text = run_main(["train", "--data", str(data), "--out-dir", str(tmp_path / "runs"),
                           *TRAIN_OPTIONS, "--name", "fresh"], capsys)
    assert code == 2 and "missing_id" in text
    assert not (tmp_path / "runs" / "fresh").exists()


def test_principle4_user_names_never_escape_their_folder(tmp_path, capsys):
    data = make_dataset(tmp_path / "ds")
    runs = tmp_path / "nest" / "runs"
    for name in ("../escaped", "/tmp/abs", "..", "a/b"):
        code, text = run_main(["train", "--data", str(data), "--out-dir", str(runs),
                               *TRAIN_OPTIONS, "--name", name], capsys)
        assert code == 2
        one_paragraph_error(text, "run name (--name)", "not a plain name")
    assert not (tmp_path / "nest" / "escaped").exists() and not Path("/tmp/abs").exists()
    # a split id that climbs out of images/ names no file: refused, nothing read elsewhere
    (tmp_path / "ds" / "splits" / "val.txt").write_text("../../ds/images/s0\n")
    code, text = run_main(["data", "check", str(data)], capsys)
    assert code == 2 and "../../ds/images/s0" in text


def test_principle5_os_failures_are_clear_exit_2_paragraphs(tmp_path, checkpoint):
    """A read-only output folder and a full disk, in real processes: exit 2, one paragraph
    naming the path, nothing half-written left."""
    readonly = tmp_path / "ro"
    readonly.mkdir()
    image = image_file(tmp_path / "x.png")
    readonly.chmod(0o555)
    try:
        done = unetlab(predict_args(checkpoint, readonly / "out", image), tmp_path,
                       FAULT_READONLY=str(readonly))
    finally:
        readonly.chmod(0o755)
    assert done.returncode == 2
    one_paragraph_error(done.stderr, str(readonly / "out"), "read-only")
    assert list(readonly.iterdir()) == []
    # train and evaluate into a read-only folder, predict into a folder we may not write
    data = make_dataset(tmp_path / "ds")
    commands = {
        "FAULT_READONLY": [
            (["train", "--data", str(data), "--out-dir", str(readonly / "runs"),
              *TRAIN_OPTIONS], readonly / "runs"),
            (["evaluate", str(checkpoint), "--data", str(data), "--out", str(readonly / "ev"),
              "--device", "cpu"], readonly / "ev"),
        ],
        "FAULT_DENIED": [(predict_args(checkpoint, readonly / "out", image), readonly / "out")],
    }
    for fault, runs in commands.items():
        for argv, named in runs:
            done = unetlab(argv, tmp_path, **{fault: str(readonly)})
            assert done.returncode == 2, done.stderr
            says = "read-only" if fault == "FAULT_READONLY" else "permission denied"
            one_paragraph_error(done.stderr, str(named), says)
    assert list(readonly.iterdir()) == []

    out = tmp_path / "full"
    done = unetlab(predict_args(checkpoint, out, image), tmp_path, FAULT_DISK_FULL="1")
    assert done.returncode == 2
    one_paragraph_error(done.stderr, "disk is full", str(out / "x_mask.png"))
    assert [p.name for p in out.iterdir()] == []  # the temp file was removed


def test_principle6_text_inputs_in_any_encoding(tmp_path, capsys):
    """Split files and classes.txt with a UTF-8 BOM, as UTF-16, with CRLF: read correctly."""
    data = make_dataset(tmp_path / "ds")
    encodings = {
        "train.txt": codecs.BOM_UTF8 + b"s0\r\ns1\r\n",
        "val.txt": "s2\r\ns3\r\n".encode("utf-16"),  # with its BOM, as PowerShell writes it
    }
    for name, raw in encodings.items():
        (data / "splits" / name).write_bytes(raw)
    (data / "classes.txt").write_bytes(codecs.BOM_UTF8 + b"background\r\nobject\r\n")
    code, text = run_main(["data", "check", str(data)], capsys)
    assert code == 0, text
    from unetlab.data.layouts import dataset_info

    info = dataset_info(data)
    assert info.splits == {"train": ["s0", "s1"], "val": ["s2", "s3"]}
    assert info.class_names == ["background", "object"]
    (data / "splits" / "val.txt").write_bytes(b"s2\n\xff\xfes3\n")  # not text in any encoding
    code, text = run_main(["data", "check", str(data)], capsys)
    assert code == 2
    one_paragraph_error(text, "val.txt", "byte 0xff", "UTF-8")


def test_principle7_the_advice_never_corrupts_data(tmp_path, capsys):
    """A multi-class dataset whose object-less mask has a 255 ignore band: check does not call
    it a 0/255 mask, and fix-binary (run anyway) leaves every mask as it was."""
    data = make_dataset(tmp_path / "ds", n=4)
    three = np.zeros((SIZE, SIZE), np.uint8)
    three[2:10, 2:10], three[20:30, 20:30] = 1, 2
    save_mask(data / "masks" / "s0.png", three)
    band = np.zeros((SIZE, SIZE), np.uint8)
    band[:, :3] = 255  # ignore band, no object
    save_mask(data / "masks" / "s1.png", band)
    code, text = run_main(["data", "check", str(data), "--classes", "3"], capsys)
    assert "0/255" not in text and "fix-binary" not in text, text
    before = digests(data / "masks")
    code, text = run_main(["data", "fix-binary", str(data / "masks")], capsys)
    assert code == 0 and "converted 0" in text and "ignore label" in text
    assert digests(data / "masks") == before


# ================================================================ the cases found


def test_fix_binary_never_merges_masks_that_share_an_id(tmp_path, capsys):
    masks = tmp_path / "masks"
    masks.mkdir()
    save_mask(masks / "a.png", np.array([[0, 1], [1, 0]]))
    save_mask(masks / "a.bmp", np.array([[0, 255], [0, 0]]))
    save_mask(masks / "b.bmp", np.array([[0, 255], [255, 0]]))
    before = {name: digest(masks / name) for name in ("a.png", "a.bmp")}
    code, text = run_main(["data", "fix-binary", str(masks)], capsys)
    assert code == 0
    assert {name: digest(masks / name) for name in ("a.png", "a.bmp")} == before
    assert "share the id 'a'" in text
    assert read_mask(masks / "b.png").tolist() == [[0, 1], [1, 0]]  # the rest is converted


def test_labelme_exif_rotated_jpeg_without_image_data_lines_up(tmp_path, capsys):
    """The JPEG is stored 40 wide x 24 high with EXIF orientation 6 (shown rotated 90 degrees
    clockwise, 24 x 40, as labelme shows and annotates it)."""
    stored = np.full((24, 40, 3), 20, np.uint8)
    stored[2:10, 4:14] = 230  # bright block; shown rotated at rows 4..13, columns 14..21
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "photo.jpg", exif=exif, quality=95)
    shape = {"label": "cat", "shape_type": "rectangle", "points": [[14, 4], [21, 13]]}
    document = {"shapes": [shape], "imagePath": "photo.jpg", "imageData": None,
                "imageHeight": 40, "imageWidth": 24}
    (tmp_path / "photo.json").write_text(json.dumps(document))
    out = tmp_path / "ds"
    code, text = run_main(["data", "labelme", str(tmp_path / "photo.json"), "--classes",
                           "_background_,cat", "--out", str(out)], capsys)
    assert code == 0, text
    mask = read_mask(out / "masks" / "photo.png")
    image = read_image(next((out / "images").iterdir()))
    assert image.shape[:2] == mask.shape == (40, 24)
    assert image[mask == 1].mean() > 200 and image[mask == 0].mean() < 60


def test_evaluate_all_255_masks_does_not_recommend_fix_binary(tmp_path, capsys, checkpoint):
    data = make_dataset(tmp_path / "ds")
    for i in range(4):
        save_mask(data / "masks" / f"s{i}.png", np.full((SIZE, SIZE), 255))
    code, text = run_main(["evaluate", str(checkpoint), "--data", str(data), "--out",
                           str(tmp_path / "ev"), "--device", "cpu", "--panels", "0"], capsys)
    assert code in (0, 2) and "Traceback" not in text
    assert "fix-binary" not in text


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """One finished 1-epoch run (best by mIoU), reused read-only via copies."""
    tmp = tmp_path_factory.mktemp("trained")
    data = make_dataset(tmp / "ds")
    assert main(["train", "--data", str(data), "--out-dir", str(tmp / "runs"), *TRAIN_OPTIONS,
                 "--name", "r", "--set", "train.num_predictions=0"]) == 0
    return tmp / "runs" / "r"


def copy_run(run: Path, tmp: Path) -> Path:
    import shutil

    target = tmp / "runs" / run.name
    shutil.copytree(run, target)
    shutil.copytree(run.parent.parent / "ds", tmp / "ds", dirs_exist_ok=True)
    return target


def test_resume_with_another_best_metric_does_not_compare_across_metrics(
    tmp_path, capsys, trained_run
):
    run = copy_run(trained_run, tmp_path)
    code, text = run_main(["train", "--resume", str(run), "--epochs", "2", "--set",
                           "train.best_metric=val_loss"], capsys)
    assert code == 0, text
    assert "train.best_metric is now val_loss (was miou)" in text
    best, last = (load_checkpoint(run / "checkpoints" / n) for n in ("best.pt", "last.pt"))
    assert best["epoch"] == 2 and best["early_stopping"]["metric"] == "val_loss"
    assert best["best_metric"] == pytest.approx(last["history"][1]["val_loss"])


def test_resume_refuses_best_pt_a_finished_run_and_a_spent_budget(tmp_path, capsys, trained_run):
    run = copy_run(trained_run, tmp_path)
    before = digests(run)
    code, text = run_main(["train", "--resume", str(run / "checkpoints" / "best.pt")], capsys)
    assert code == 2
    one_paragraph_error(text, "best.pt", "last.pt", f"--resume {run}")
    code, text = run_main(["train", "--resume", str(run)], capsys)
    assert code == 2
    one_paragraph_error(text, "run is complete", "--epochs")
    code, text = run_main(["train", "--resume", str(run), "--epochs", "3", "--set",
                           "train.time_limit_minutes=0.0001"], capsys)
    assert code == 2
    one_paragraph_error(text, "time budget", "total over all sessions", "time_limit_minutes=")
    assert digests(run) == before  # refusals change nothing


def test_duplicate_class_names_are_refused(tmp_path, capsys):
    data = make_dataset(tmp_path / "ds")
    (data / "classes.txt").write_text("cat\ncat\n")
    code, text = run_main(["data", "check", str(data)], capsys)
    assert code == 2
    one_paragraph_error(text, "classes.txt", "'cat' is given twice")
    code, text = run_main(["data", "labelme", str(tmp_path), "--classes", "bg,cat,cat", "--out",
                           str(tmp_path / "o")], capsys)
    assert code == 2 and "given twice" in text


def test_os_errors_at_the_command_line_are_exit_2(tmp_path, capsys, checkpoint):
    data = make_dataset(tmp_path / "ds")
    a_file = tmp_path / "file.txt"
    a_file.write_text("not a folder\n")
    code, text = run_main(["evaluate", str(checkpoint), "--data", str(data), "--out",
                           str(a_file), "--device", "cpu", "--panels", "0"], capsys)
    assert code == 2
    one_paragraph_error(text, str(a_file))
    code, text = run_main(["train", "--data", str(data), "--out-dir", str(a_file),
                           *TRAIN_OPTIONS], capsys)
    assert code == 2
    one_paragraph_error(text, str(a_file), "a folder is needed")
    assert a_file.read_text() == "not a folder\n"
    loop = data / "images" / "s9.png"
    loop.symlink_to(loop)
    code, text = run_main(["data", "check", str(data)], capsys)
    assert code == 2
    one_paragraph_error(text, str(loop), "symbolic link loop")
    loop.unlink()
    (data / "images" / "s8.png").symlink_to(tmp_path / "gone.png")
    code, text = run_main(["data", "check", str(data)], capsys)
    assert code == 2
    one_paragraph_error(text, "s8.png", "broken symbolic link")


def test_disk_full_in_process_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    import errno

    from unetlab.engine.checkpoint import save_checkpoint
    from unetlab.errors import UnetlabError

    path = make_checkpoint(tmp_path / "c" / "last.pt")
    before = digest(path)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(UnetlabError, match="disk is full") as caught:
        save_checkpoint(load_checkpoint(path), path, overwrite=True)
    assert str(path) in str(caught.value)
    assert digest(path) == before and [p.name for p in path.parent.iterdir()] == ["last.pt"]


@pytest.mark.parametrize("points", [[[20, "x"]], [[20]], None, [[float("nan"), 3], [5, 5],
                                                                    [9, 1]]],
                         ids=["text", "one-number", "null", "nan"])
def test_labelme_bad_points_are_clear_errors(tmp_path, capsys, points):
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "a.png")
    shape = {"label": "cat", "shape_type": "polygon", "points": points}
    document = {"shapes": [shape], "imagePath": "a.png", "imageHeight": 16, "imageWidth": 16}
    (tmp_path / "a.json").write_text(json.dumps(document))
    code, text = run_main(["data", "labelme", str(tmp_path / "a.json"), "--classes",
                           "_background_,cat", "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    one_paragraph_error(text, "a.json", "shape 0")
    assert not (tmp_path / "o" / "masks" / "a.png").exists()  # no garbage polygon written


def test_labelme_background_lines_and_classes_file(tmp_path, capsys):
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "a.png")
    shapes = [
        {"label": "cat", "shape_type": "rectangle", "points": [[2, 2], [6, 6]]},
        {"label": "dog", "shape_type": "line", "points": [[0, 0], [9, 9]]},
    ]
    document = {"shapes": shapes, "imagePath": "a.png", "imageHeight": 16, "imageWidth": 16}
    (tmp_path / "a.json").write_text(json.dumps(document))
    code, text = run_main(["data", "labelme", str(tmp_path / "a.json"), "--classes", "cat,dog",
                           "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    one_paragraph_error(text, "'cat', the first class", "_background_,cat,dog")
    (tmp_path / "labels.txt").write_bytes(codecs.BOM_UTF8 + b"_background_\r\ncat\r\ndog\r\n")
    code, text = run_main(["data", "labelme", str(tmp_path / "a.json"), "--classes",
                           str(tmp_path / "labels.txt"), "--out", str(tmp_path / "o")], capsys)
    assert code == 0, text
    assert "shape 1 ('dog') is a line" in text
    mask = read_mask(tmp_path / "o" / "masks" / "a.png")
    assert mask[2:7, 2:7].min() == 1 and mask.sum() == 25  # the rectangle only
    assert (tmp_path / "o" / "classes.txt").read_text().split() == ["_background_", "cat", "dog"]


def test_misleading_checkpoint_messages_say_what_the_file_is(tmp_path, capsys):
    image = image_file(tmp_path / "x.png")
    random_bytes = tmp_path / "random.pt"
    random_bytes.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    plain = tmp_path / "plain.pt"
    torch.save({"conv.weight": torch.zeros(2, 3)}, plain)
    cases = {random_bytes: "not a PyTorch file", plain: "bare weights"}
    for path, says in cases.items():
        code, text = run_main(predict_args(path, tmp_path / "o", image), capsys)
        assert code == 2
        one_paragraph_error(text, str(path), says)
        assert "weights_only" not in text and "--pretrained" not in text
        assert "could run code" not in text


def test_onnx_file_named_pt_and_summary_of_an_onnx_file(tmp_path, capsys, checkpoint):
    pytest.importorskip("onnx")
    onnx_file = tmp_path / "m.onnx"
    assert main(["export", str(checkpoint), "--out", str(onnx_file)]) == 0
    renamed = tmp_path / "renamed.pt"
    renamed.write_bytes(onnx_file.read_bytes())
    capsys.readouterr()
    for argv in (predict_args(renamed, tmp_path / "o", image_file(tmp_path / "x.png")),
                 ["summary", str(onnx_file)]):
        code, text = run_main(argv, capsys)
        assert code == 2, text
        assert "ONNX model" in text and "weights_only" not in text and "could run code" not in text


def test_export_into_a_read_only_folder_does_not_blame_the_opset(tmp_path, checkpoint):
    pytest.importorskip("onnx")
    readonly = tmp_path / "ro"
    readonly.mkdir()
    done = unetlab(["export", str(checkpoint), "--out", str(readonly / "m.onnx")], tmp_path,
                   FAULT_READONLY=str(readonly))
    assert done.returncode == 2
    one_paragraph_error(done.stderr, "m.onnx", "read-only")
    assert "opset" not in done.stderr


def test_unique_names_against_a_brute_force_check():
    """Every assignment is distinct (case-insensitively), first users keep their stem, and
    suffixed names never take another input's stem."""
    rng = np.random.default_rng(3)
    alphabet = ["a", "A", "a_2", "a_3", "b", "a_2_2"]
    for _ in range(200):
        stems = list(rng.choice(alphabet, size=rng.integers(1, 8)))
        names = unique_names(stems)
        assert len({n.casefold() for n in names}) == len(names)
        seen = set()
        for stem, name in zip(stems, names, strict=True):
            if stem.casefold() not in seen:
                assert name == stem
            else:
                assert name.startswith(f"{stem}_")
                assert name.casefold() not in {s.casefold() for s in stems}
            seen.add(stem.casefold())


def test_evaluate_twice_needs_overwrite(tmp_path, capsys, checkpoint):
    data = make_dataset(tmp_path / "ds")
    argv = ["evaluate", str(checkpoint), "--data", str(data), "--out", str(tmp_path / "ev"),
            "--device", "cpu", "--panels", "1"]
    assert run_main(argv, capsys)[0] == 0
    before = digests(tmp_path / "ev")
    code, text = run_main(argv, capsys)
    assert code == 2
    one_paragraph_error(text, "report.json", "--overwrite")
    assert digests(tmp_path / "ev") == before
    assert run_main([*argv, "--overwrite"], capsys)[0] == 0


def test_reconcile_best_repairs_an_older_best_from_last(tmp_path):
    """Killed between writing last.pt (epoch 2, best) and best.pt (still epoch 1): the repair
    writes best.pt from last.pt's weights; a best.pt that last.pt cannot explain is adopted."""
    from types import SimpleNamespace

    from unetlab.engine.checkpoint import save_checkpoint
    from unetlab.engine.runfolder import reconcile_best

    old = load_checkpoint(make_checkpoint(tmp_path / "old.pt"))
    new = load_checkpoint(make_checkpoint(tmp_path / "new.pt", batch_norm=False))
    best_path = tmp_path / "best.pt"
    stopping = {"metric": "miou", "best": 0.5, "best_epoch": 1}
    save_checkpoint({**old, "epoch": 1, "best_metric": 0.5, "early_stopping": stopping},
                    best_path)
    last = {**new, "epoch": 2, "early_stopping": {**stopping, "best": 0.7, "best_epoch": 2}}
    state = SimpleNamespace(best=0.7, best_epoch=2)
    repair, note = reconcile_best(last, best_path, state, "miou")
    assert repair is not None and repair["epoch"] == 2 and "rewritten" in note
    assert (state.best, state.best_epoch) == (0.7, 2)
    for key, value in new["state_dict"].items():
        assert torch.equal(repair["state_dict"][key], value)
    # last.pt (epoch 3) says epoch 2 is best, best.pt holds epoch 1: adopt what best.pt holds
    state = SimpleNamespace(best=0.7, best_epoch=2)
    repair, note = reconcile_best({**last, "epoch": 3}, best_path, state, "miou")
    assert repair is None and (state.best, state.best_epoch) == (0.5, 1) and "holds epoch 1" in note


# ================================================================ the mechanisms, in general


def test_colliding_ids_get_distinct_panels(tmp_path, capsys, checkpoint):
    """Ids ``a b`` and ``a_b`` both make the file name ``a_b``: evaluate's panels stay two."""
    data = make_dataset(tmp_path / "ds")
    for old, new in (("s2", "a b"), ("s3", "a_b")):
        for folder in ("images", "masks"):
            (data / folder / f"{old}.png").rename(data / folder / f"{new}.png")
    (data / "splits" / "val.txt").write_text("a b\na_b\n")
    out = tmp_path / "ev"
    code, text = run_main(["evaluate", str(checkpoint), "--data", str(data), "--out", str(out),
                           "--device", "cpu", "--panels", "2"], capsys)
    assert code == 0, text
    names = sorted(p.name for p in (out / "panels").iterdir())  # <rank>_<id>, worst first
    assert len(names) == 2 and {n.split("_", 1)[1] for n in names} == {"a_b.png"}


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def test_every_file_written_gets_the_umask_mode(tmp_path, capsys, checkpoint, umask_027):
    """Under umask 027 every file the commands write is 0640 (never mkstemp's 0600): a training
    run (checkpoints, metrics.csv, config.yaml, plots, predictions), evaluate's report, plot and
    panels, converted datasets (synth, split, tiff, labelme)."""
    synth = tmp_path / "synth"
    assert run_main(["data", "synth", str(synth), "--train", "4", "--val", "2", "--size",
                     "32"], capsys)[0] == 0
    assert run_main(["data", "split", str(synth), "--force"], capsys)[0] == 0
    data = make_dataset(tmp_path / "ds")
    code, text = run_main(["train", "--data", str(data), "--out-dir", str(tmp_path / "runs"),
                           *TRAIN_OPTIONS, "--name", "r", "--set", "train.num_predictions=1"],
                          capsys)
    assert code == 0, text
    code, text = run_main(["evaluate", str(checkpoint), "--data", str(data), "--out",
                           str(tmp_path / "ev"), "--device", "cpu", "--panels", "1"], capsys)
    assert code == 0, text
    stack = [Image.fromarray(np.full((8, 8), v, np.uint8)) for v in (10, 20)]
    stack[0].save(tmp_path / "stack.tif", save_all=True, append_images=stack[1:])
    assert run_main(["data", "tiff", str(tmp_path / "stack.tif"), "--out",
                     str(tmp_path / "slices")], capsys)[0] == 0
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "a.png")
    shape = {"label": "cat", "shape_type": "rectangle", "points": [[2, 2], [6, 6]]}
    (tmp_path / "a.json").write_text(json.dumps(
        {"shapes": [shape], "imagePath": "a.png", "imageHeight": 16, "imageWidth": 16}))
    assert run_main(["data", "labelme", str(tmp_path / "a.json"), "--classes",
                     "_background_,cat", "--out", str(tmp_path / "lm")], capsys)[0] == 0
    written = [p for folder in ("synth", "runs", "ev", "slices", "lm")
               for p in (tmp_path / folder).rglob("*") if p.is_file()]
    kinds = {p.suffix for p in written}
    assert {".pt", ".csv", ".yaml", ".png", ".json", ".txt"} <= kinds, kinds
    modes = {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777) for p in written
             if "tensorboard" not in p.parts}  # TensorBoard writes its own files
    assert set(modes.values()) == {oct(0o640)}, modes


@pytest.mark.parametrize(
    "case", ["loop", "broken-link", "not-a-folder", "file-in-the-way", "folder-in-the-way",
             "name-too-long", "permission", "read-only"],
)
def test_every_os_failure_is_one_paragraph_naming_the_path(tmp_path, case, monkeypatch):
    """Each file-system failure, made by the real call where this machine can make it (the
    permission and read-only errnos are raised by a patched ``os.open``: chmod does not stop
    root), becomes one UnetlabError naming the path, which the CLI prints with exit code 2."""
    import errno

    from unetlab.errors import UnetlabError
    from unetlab.fs.atomic import make_folder, write_text
    from unetlab.fs.text import read_text

    a_file = tmp_path / "file.txt"
    a_file.write_text("x\n")
    link = tmp_path / "link.txt"
    cases = {
        "loop": (lambda: (link.symlink_to(link), read_text(link)), link, "symbolic link loop"),
        "broken-link": (lambda: (link.symlink_to(tmp_path / "gone"), read_text(link)), link,
                        "broken symbolic link"),
        "not-a-folder": (lambda: write_text(a_file / "sub" / "x.txt", "x"), a_file,
                         "is a file, not a folder"),
        "file-in-the-way": (lambda: make_folder(a_file), a_file, "where a folder is needed"),
        "folder-in-the-way": (lambda: write_text(tmp_path, "x"), tmp_path, "folder is in the way"),
        "name-too-long": (lambda: write_text(tmp_path / ("n" * 300), "x"), "n" * 300,
                          "name is too long"),
    }
    if case in ("permission", "read-only"):
        code = errno.EACCES if case == "permission" else errno.EROFS

        def refuse(path, flags, mode=0o777, *, dir_fd=None):
            raise OSError(code, os.strerror(code), os.fsdecode(path))

        monkeypatch.setattr(os, "open", refuse)
        target = tmp_path / "out.txt"
        says = "permission denied" if case == "permission" else "read-only"
        cases[case] = (lambda: write_text(target, "x"), "out.txt", says)
    action, named, says = cases[case]
    with pytest.raises(UnetlabError) as caught:
        action()
    monkeypatch.undo()
    text = str(caught.value)
    assert str(named) in text and says in text, text
    assert a_file.read_text() == "x\n"
