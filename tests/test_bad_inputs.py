"""Bad input, tried systematically through the command line (issue 5).

Every case builds its own broken dataset, config, checkpoint or input in a temporary folder,
runs the real ``unetlab`` entry point and checks what a user sees: a non-zero exit code, one
short error that names the offending file (or field/option), says what is wrong and what to
do, and no stack trace unless ``--debug`` is given. Most cases call ``main(argv)`` in process
(fast); a few run ``python -m unetlab.cli.main`` as a real subprocess, the honest check that
nothing else reaches the terminal.

Also here: inputs that are odd but legal (a 1x1 image, a 20000x20000 image) must give a correct
result with bounded memory.
"""

from __future__ import annotations

import os
import re
import shlex
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unetlab.cli.main import main
from unetlab.engine.checkpoint import save_checkpoint
from unetlab.models import build_model

SIZE = 32  # image side of the test datasets
MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]  # stored in the test checkpoints
TRAIN_OPTIONS = shlex.split(
    "--epochs 1 --batch-size 2 --device cpu --set model.options.base=4 "
    "--set model.options.depth=2 --set data.patch_size=32 --set data.num_workers=0"
)
"""A run that would take seconds if a broken input slipped through (it must not)."""


# ---------------------------------------------------------------- what the tests write


def make_dataset(root: Path, n: int = 4, size: int = SIZE) -> Path:
    """A good plain-layout dataset (2 classes): ids s0..s{n-1}, train = first half, val = rest."""
    rng = np.random.default_rng(0)
    for folder in ("images", "masks", "splits"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), np.uint8)).save(
            root / "images" / f"s{i}.png"
        )
        mask = np.zeros((size, size), np.uint8)
        mask[size // 4 : size // 2, 2 : size - 2] = 1
        Image.fromarray(mask).save(root / "masks" / f"s{i}.png")
    ids = [f"s{i}" for i in range(n)]
    (root / "splits" / "train.txt").write_text("\n".join(ids[: n // 2]) + "\n")
    (root / "splits" / "val.txt").write_text("\n".join(ids[n // 2 :]) + "\n")
    return root


def make_checkpoint(
    path: Path,
    num_classes: int = 2,
    stated_classes: int | None = None,
    in_channels: int = 3,
    stated_options: dict | None = None,
    **options,
) -> Path:
    """A unetlab checkpoint of a tiny U-Net; ``stated_*`` make its spec lie about the weights."""
    options = {"base": 4, "depth": 2, **options}
    model = build_model("unet", num_classes, in_channels=in_channels, **options)
    spec = {**model.spec, "num_classes": stated_classes or num_classes}
    spec["options"] = {**spec["options"], **(stated_options or {})}
    names = [f"class{i}" for i in range(spec["num_classes"])]
    colors = [[40 * i, 255 - 40 * i, 0] for i in range(spec["num_classes"])]
    data = {
        "class_names": names,
        "class_colors": colors,
        "mean": MEAN[:in_channels],
        "std": STD[:in_channels],
    }
    return save_checkpoint({"model": spec, "state_dict": model.state_dict(), "data": data}, path)


def constant_png(path: Path, width: int, height: int, value: int = 128) -> Path:
    """An 8-bit grayscale PNG of one colour, written without building the pixels in memory.

    The rows are deflated once in a block ending with a full flush (which resets the
    compressor), so the same compressed block can be repeated: a 20000 x 20000 image is a
    0.4 MB file made in well under a second.
    """
    rows_per_block = next(r for r in (100, 50, 10, 1) if height % r == 0)
    raw = (b"\x00" + bytes([value]) * width) * rows_per_block  # filter byte 0 + pixels
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = deflate.compress(raw) + deflate.flush(zlib.Z_FULL_FLUSH)
    end = zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    checksum = 1
    for _ in range(height // rows_per_block):
        checksum = zlib.adler32(raw, checksum)
    stream = b"\x78\xda" + block * (height // rows_per_block) + end + struct.pack(">I", checksum)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")
    )
    return path


def save_mask(path: Path, mask: np.ndarray) -> None:
    Image.fromarray(mask.astype(np.uint8)).save(path)


def train_argv(data: Path, tmp: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "--out-dir", str(tmp / "runs"), *TRAIN_OPTIONS, *extra]


def predict_argv(checkpoint: Path, tmp: Path, *inputs: Path | str) -> list[str]:
    out = str(tmp / "predictions")
    return [
        "predict",
        str(checkpoint),
        *map(str, inputs),
        "--out",
        out,
        *shlex.split("--device cpu --quiet"),
    ]


def evaluate_argv(checkpoint: Path, data: Path, tmp: Path) -> list[str]:
    out = str(tmp / "evaluation")
    return [
        "evaluate",
        str(checkpoint),
        "--data",
        str(data),
        "--out",
        out,
        *shlex.split("--device cpu --panels 0"),
    ]


# ---------------------------------------------------------------- the catalogue


Words = tuple[str, ...]  # alternatives: one of them must appear


@dataclass(frozen=True)
class Case:
    """A command line and what its error message must contain (case-insensitive).

    ``names``: the offending file, field or option (each must appear); ``says``: what is wrong;
    ``todo``: what to do. Each entry of ``says``/``todo`` is a word or a tuple of alternatives.
    """

    argv: list[str]
    names: list[str]
    says: list[str | Words]
    todo: list[str | Words]
    exit_code: int = 2
    absent: list[str] = field(default_factory=list)  # e.g. files that must not be written
    max_lines: int = 4  # the problem and what to do; click usage errors take 3


def truncated_image(tmp: Path) -> Case:
    data = make_dataset(tmp / "ds")
    path = data / "images" / "s1.png"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return Case(
        train_argv(data, tmp),
        names=[str(path)],
        says=[("truncated", "corrupt")],
        todo=[("re-export", "re-copy", "replace")],
    )


def corrupt_image_data(tmp: Path) -> Case:
    """The PNG's compressed pixel data scrambled, its header intact."""
    data = make_dataset(tmp / "ds")
    path = data / "images" / "s0.png"
    raw = bytearray(path.read_bytes())
    start = raw.index(b"IDAT") + 8
    raw[start : start + 200] = np.random.default_rng(1).integers(0, 256, 200, np.uint8).tobytes()
    path.write_bytes(bytes(raw))
    return Case(
        train_argv(data, tmp),
        names=[str(path)],
        says=[("corrupt", "truncated", "cannot")],
        todo=[("re-export", "re-copy", "replace")],
    )


def zero_byte_image(tmp: Path) -> Case:
    data = make_dataset(tmp / "ds")
    path = data / "images" / "s2.png"
    path.write_bytes(b"")
    return Case(
        train_argv(data, tmp),
        names=[str(path)],
        says=[("empty", "0 bytes")],
        todo=[("replace", "delete")],
    )


def text_named_png_image(tmp: Path) -> Case:
    data = make_dataset(tmp / "ds")
    path = data / "images" / "s1.png"
    path.write_text("id,label\n1,cat\n")
    return Case(
        train_argv(data, tmp),
        names=[str(path)],
        says=["not an image", "text"],
        todo=[("replace", "delete")],
    )


def text_named_png_mask(tmp: Path) -> Case:
    """Through ``evaluate``, which reads masks lazily (no up-front check)."""
    data = make_dataset(tmp / "ds")
    path = data / "masks" / "s3.png"
    path.write_text("this is not a mask")
    checkpoint = make_checkpoint(tmp / "model.pt")
    return Case(
        evaluate_argv(checkpoint, data, tmp),
        names=[str(path)],
        says=["mask", "text"],
        todo=[("replace", "delete")],
    )


def mask_values_beyond_classes(tmp: Path) -> Case:
    data = make_dataset(tmp / "ds")
    (data / "classes.txt").write_text("background\nroad\n")
    mask = np.zeros((SIZE, SIZE))
    mask[:4], mask[6:9] = 1, 7
    save_mask(data / "masks" / "s1.png", mask)
    return Case(
        train_argv(data, tmp),
        names=[str(data / "masks" / "s1.png"), "7"],
        says=["not classes", "2"],
        todo=[("fix the mask", "number of classes")],
    )


def binary_0_255_masks(tmp: Path) -> Case:
    data = make_dataset(tmp / "ds")
    for path in (data / "masks").glob("*.png"):
        save_mask(path, np.asarray(Image.open(path)) * 255)
    return Case(
        train_argv(data, tmp),
        names=[str(data / "masks")],
        says=["0 and 255", "ignore"],
        todo=["fix-binary"],
    )


def binary_0_255_masks_evaluate(tmp: Path) -> Case:
    """``evaluate`` does not run the dataset check: 0/255 masks must still be caught."""
    data = make_dataset(tmp / "ds")
    for path in (data / "masks").glob("*.png"):
        save_mask(path, np.asarray(Image.open(path)) * 255)
    checkpoint = make_checkpoint(tmp / "model.pt")
    return Case(
        evaluate_argv(checkpoint, data, tmp),
        names=[str(data / "masks")],
        says=["255"],
        todo=["fix-binary"],
    )


def rgb_mask(tmp: Path) -> Case:
    data = make_dataset(tmp / "ds")
    colours = np.zeros((SIZE, SIZE, 3), np.uint8)
    colours[4:9] = (0, 128, 0)
    Image.fromarray(colours).save(data / "masks" / "s0.png")
    return Case(
        train_argv(data, tmp),
        names=[str(data / "masks" / "s0.png")],
        says=[("colour", "color", "rgb")],
        todo=[("index", "palette", "grayscale")],
    )


def jpeg_mask(tmp: Path) -> Case:
    data = make_dataset(tmp / "ds")
    (data / "masks" / "s0.png").unlink()
    Image.fromarray(np.zeros((SIZE, SIZE), np.uint8)).save(data / "masks" / "s0.jpg")
    return Case(
        train_argv(data, tmp),
        names=[str(data / "masks" / "s0.jpg")],
        says=["jpeg", "lossy"],
        todo=["png"],
    )


def size_mismatch(tmp: Path) -> Case:
    data = make_dataset(tmp / "ds")
    save_mask(data / "masks" / "s3.png", np.zeros((SIZE - 12, SIZE)))
    return Case(
        train_argv(data, tmp),
        names=[str(data / "masks" / "s3.png"), "32x20"],
        says=["but its image"],
        todo=[("same width and height", "re-export")],
    )


def split_id_without_files(tmp: Path) -> Case:
    data = make_dataset(tmp / "ds")
    (data / "splits" / "train.txt").write_text("s0\ns1\nghost_42\n")
    return Case(
        train_argv(data, tmp),
        names=[str(data / "splits" / "train.txt"), "ghost_42"],
        says=["no image"],
        todo=[("add the files", "remove")],
    )


def empty_split_file(tmp: Path) -> Case:
    data = make_dataset(tmp / "ds")
    (data / "splits" / "val.txt").write_text("\n# nothing yet\n")
    return Case(
        train_argv(data, tmp),
        names=[str(data / "splits" / "val.txt")],
        says=["no ids"],
        todo=[("one id", "data split")],
    )


def empty_images_folder(tmp: Path) -> Case:
    data = tmp / "ds"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    return Case(
        train_argv(data, tmp),
        names=[str(data / "images")],
        says=["no images"],
        todo=["put the images"],
    )


def missing_dataset_folder(tmp: Path) -> Case:
    return Case(
        train_argv(tmp / "no_such_dataset", tmp),
        names=[str(tmp / "no_such_dataset")],
        says=["not found"],
        todo=["check the path"],
    )


def missing_dataset_folder_evaluate(tmp: Path) -> Case:
    checkpoint = make_checkpoint(tmp / "model.pt")
    return Case(
        evaluate_argv(checkpoint, tmp / "nowhere", tmp),
        names=[str(tmp / "nowhere")],
        says=["not found"],
        todo=["check the path"],
    )


def config_unknown_field(tmp: Path) -> Case:
    data = make_dataset(tmp / "ds")
    config = tmp / "run.yaml"
    config.write_text("optim:\n  learning_rate: 0.1\n")
    return Case(
        ["train", str(config), *train_argv(data, tmp)[1:]],
        names=[str(config), "optim.learning_rate"],
        says=["unknown field"],
        todo=["lr"],
    )


def config_mistyped_field(tmp: Path) -> Case:
    data = make_dataset(tmp / "ds")
    config = tmp / "run.yaml"
    config.write_text("train:\n  epochs: ten\n")
    return Case(
        ["train", str(config), "--data", str(data), "--out-dir", str(tmp / "runs")],
        names=[str(config), "train.epochs", "ten"],
        says=["integer"],
        todo=["fix the field"],
    )


def override_mistyped_field(tmp: Path) -> Case:
    data = make_dataset(tmp / "ds")
    return Case(
        train_argv(data, tmp, "--set", "optim.lr=fast"),
        names=["optim.lr", "--set", "fast"],
        says=["number"],
        todo=["fix the field"],
    )


def config_not_yaml(tmp: Path) -> Case:
    config = tmp / "run.yaml"
    config.write_text("train: [epochs: 1\n")
    return Case(
        ["train", str(config), "--data", str(tmp)],
        names=[str(config)],
        says=["yaml"],
        todo=["fix the yaml"],
    )


def checkpoint_weights_do_not_fit(tmp: Path) -> Case:
    """The spec says 3 classes, the weights are of a 2-class model."""
    data = make_dataset(tmp / "ds")
    checkpoint = make_checkpoint(tmp / "model.pt", num_classes=2, stated_classes=3)
    return Case(
        evaluate_argv(checkpoint, data, tmp),
        names=[str(checkpoint), "head.weight"],
        says=["do not fit", "shape"],
        todo=["another model", "class count"],
    )


def checkpoint_from_another_architecture(tmp: Path) -> Case:
    """The spec says a 3-level U-Net, the weights are of a 2-level one."""
    checkpoint = make_checkpoint(tmp / "model.pt", stated_options={"depth": 3})
    image = tmp / "a.png"
    Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(image)
    return Case(
        predict_argv(checkpoint, tmp, image),
        names=[str(checkpoint), "missing"],
        says=["do not fit"],
        todo=["another model"],
        absent=[str(tmp / "predictions" / "a_mask.png")],
    )


def checkpoint_for_fewer_classes(tmp: Path) -> Case:
    """A 2-class model evaluated on data with class 3."""
    data = make_dataset(tmp / "ds")
    mask = np.zeros((SIZE, SIZE))
    mask[:5] = 3
    save_mask(data / "masks" / "s2.png", mask)
    checkpoint = make_checkpoint(tmp / "model.pt")
    return Case(
        evaluate_argv(checkpoint, data, tmp),
        names=[str(data / "masks" / "s2.png"), "3"],
        says=["2 classes"],
        todo=[("labelled with the model's classes", "train a model")],
    )


def checkpoint_truncated(tmp: Path) -> Case:
    checkpoint = make_checkpoint(tmp / "model.pt")
    checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    image = tmp / "a.png"
    Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(image)
    return Case(
        predict_argv(checkpoint, tmp, image),
        names=[str(checkpoint)],
        says=[("truncated", "not a readable")],
        todo=[("last.pt", "retrain")],
        absent=[str(tmp / "predictions" / "a_mask.png")],
    )


def checkpoint_zero_bytes(tmp: Path) -> Case:
    data = make_dataset(tmp / "ds")
    checkpoint = tmp / "model.pt"
    checkpoint.write_bytes(b"")
    return Case(
        evaluate_argv(checkpoint, data, tmp),
        names=[str(checkpoint)],
        says=[("empty", "truncated", "not a readable")],
        todo=[("last.pt", "retrain")],
    )


def checkpoint_plain_state_dict(tmp: Path) -> Case:
    """A torch file, but only a state dict: no spec to rebuild the model from."""
    checkpoint = tmp / "weights.pt"
    torch.save(build_model("unet", 2, base=4, depth=2).state_dict(), checkpoint)
    image = tmp / "a.png"
    Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(image)
    return Case(
        predict_argv(checkpoint, tmp, image),
        names=[str(checkpoint)],
        says=["not a unetlab checkpoint"],
        todo=["pretrained"],
    )


def undecodable_video(tmp: Path) -> Case:
    checkpoint = make_checkpoint(tmp / "model.pt")
    video = tmp / "clip.mp4"
    video.write_bytes(np.random.default_rng(2).integers(0, 256, 20000, np.uint8).tobytes())
    return Case(
        predict_argv(checkpoint, tmp, video),
        names=[str(video)],
        says=[("cannot open", "cannot decode", "damaged")],
        todo=["re-encode"],
    )


def unknown_model_option(tmp: Path) -> Case:
    data = make_dataset(tmp / "ds")
    return Case(
        train_argv(data, tmp, "--model", "unet_plus_plus"),
        names=["unet_plus_plus", "model.name"],
        says=["unknown model"],
        todo=["unet", "vgg16_unet"],
    )


def unknown_model_in_config(tmp: Path) -> Case:
    """The name comes from a YAML file: the message must say which file and field."""
    data = make_dataset(tmp / "ds")
    config = tmp / "run.yaml"
    config.write_text("model:\n  name: unetz\n")
    return Case(
        ["train", str(config), *train_argv(data, tmp)[1:]],
        names=[str(config), "model.name", "unetz"],
        says=["unknown model"],
        todo=["vgg16_unet"],
    )


def unknown_loss_in_config(tmp: Path) -> Case:
    data = make_dataset(tmp / "ds")
    config = tmp / "run.yaml"
    config.write_text("loss:\n  name: dicee\n")
    return Case(
        ["train", str(config), *train_argv(data, tmp)[1:]],
        names=[str(config), "loss.name", "dicee"],
        says=["unknown loss"],
        todo=["ce_dice"],
    )


def unknown_loss_option(tmp: Path) -> Case:
    data = make_dataset(tmp / "ds")
    return Case(
        train_argv(data, tmp, "--set", "loss.name=dicee"),
        names=["dicee", "loss.name"],
        says=["unknown loss"],
        todo=["ce_dice"],
    )


def unknown_model_summary(tmp: Path) -> Case:
    return Case(
        ["summary", "unetz"],
        names=["unetz"],
        says=[("neither a model name", "unknown")],
        todo=["mobilenet_unet"],
    )


def summary_input_not_a_size(tmp: Path) -> Case:
    return Case(
        ["summary", "unet", "--input", "banana"],
        names=["--input", "banana"],
        says=["not a size"],
        todo=["3x512x512"],
    )


def summary_input_zero_side(tmp: Path) -> Case:
    return Case(
        ["summary", "unet", "--input", "3x0x64"],
        names=["--input", "3x0x64"],
        says=["positive"],
        todo=["3x512x512"],
    )


def summary_input_wrong_multiple(tmp: Path) -> Case:
    argv = ["summary", "unet", "-o", "base=4", "--input", "3x100x100"]
    return Case(
        argv, names=["--input", "3x100x100"], says=["multiples of 16"], todo=["96x96", "112x112"]
    )


def predict_input_missing(tmp: Path) -> Case:
    checkpoint = make_checkpoint(tmp / "model.pt")
    return Case(
        predict_argv(checkpoint, tmp, tmp / "photos" / "img_001.png"),
        names=[str(tmp / "photos" / "img_001.png")],
        says=["no such file"],
        todo=["check the path"],
    )


def predict_input_not_an_image(tmp: Path) -> Case:
    checkpoint = make_checkpoint(tmp / "model.pt")
    notes = tmp / "notes.txt"
    notes.write_text("hello")
    return Case(
        predict_argv(checkpoint, tmp, notes),
        names=[str(notes)],
        says=["not an image or video"],
        todo=[".png", ".mp4"],
    )


def predict_truncated_image_among_good(tmp: Path) -> Case:
    checkpoint = make_checkpoint(tmp / "model.pt")
    images = tmp / "in"
    images.mkdir()
    for name in ("a", "b"):
        Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(images / f"{name}.png")
    bad = images / "b.png"
    bad.write_bytes(bad.read_bytes()[:60])
    return Case(
        predict_argv(checkpoint, tmp, images),
        names=[str(bad)],
        says=[("truncated", "corrupt")],
        todo=[("re-export", "re-copy")],
    )


def resume_without_checkpoint(tmp: Path) -> Case:
    (tmp / "runs" / "old").mkdir(parents=True)
    return Case(
        ["train", "--resume", str(tmp / "runs" / "old")],
        names=[str(tmp / "runs" / "old")],
        says=["nothing to resume"],
        todo=["run folder"],
    )


CASES: list[Callable[[Path], Case] | pytest.param] = [
    truncated_image,
    corrupt_image_data,
    zero_byte_image,
    text_named_png_image,
    text_named_png_mask,
    mask_values_beyond_classes,
    binary_0_255_masks,
    binary_0_255_masks_evaluate,
    rgb_mask,
    jpeg_mask,
    size_mismatch,
    split_id_without_files,
    empty_split_file,
    empty_images_folder,
    missing_dataset_folder,
    missing_dataset_folder_evaluate,
    config_unknown_field,
    config_mistyped_field,
    override_mistyped_field,
    config_not_yaml,
    checkpoint_weights_do_not_fit,
    checkpoint_from_another_architecture,
    checkpoint_for_fewer_classes,
    checkpoint_truncated,
    checkpoint_zero_bytes,
    checkpoint_plain_state_dict,
    undecodable_video,
    unknown_model_option,
    unknown_model_in_config,
    unknown_loss_option,
    unknown_loss_in_config,
    unknown_model_summary,
    summary_input_not_a_size,
    summary_input_zero_side,
    summary_input_wrong_multiple,
    predict_input_missing,
    predict_input_not_an_image,
    predict_truncated_image_among_good,
    resume_without_checkpoint,
]

SUBPROCESS_CASES = [checkpoint_truncated, undecodable_video]
"""Also run as real processes: what reaches the terminal, native library output included
(FFmpeg prints to the process's stderr itself). Few, because each costs a Python start."""


def _case_id(item) -> str:
    return item.values[0].__name__ if hasattr(item, "values") else item.__name__


def _contains(text: str, words: str | Words) -> bool:
    alternatives = (words,) if isinstance(words, str) else words
    return any(word.lower() in text.lower() for word in alternatives)


def check_message(case: Case, code: int, out: str, err: str) -> None:
    """The assertions every case shares (see the module docstring)."""
    shown = f"exit code {code}\n--- stderr:\n{err}\n--- stdout:\n{out}"
    assert code == case.exit_code, shown
    assert "Traceback" not in err + out and 'File "' not in err, shown
    assert "error" in err.lower(), shown  # the error goes to stderr, not stdout
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) <= case.max_lines, f"not one short paragraph\n{shown}"
    for name in case.names:
        assert name in err, f"the message does not name {name!r}\n{shown}"
    for words in [*case.says, *case.todo]:
        assert _contains(err, words), f"the message lacks {words!r}\n{shown}"
    assert "unexpected" not in err.lower(), shown  # an unforeseen exception, not a UnetlabError
    # native library chatter such as FFmpeg's "[mov,mp4,m4a @ 0x55d0] moov atom not found"
    assert not re.search(r"\[[^\]]* @ 0x[0-9a-f]+\]", err), f"native log output\n{shown}"
    for path in case.absent:
        assert not Path(path).exists(), f"{path} was written despite the error"


@pytest.mark.parametrize("make_case", CASES, ids=[_case_id(c) for c in CASES])
def test_bad_input_gives_one_clear_error(make_case, tmp_path, capfd) -> None:
    case = make_case(tmp_path)
    capfd.readouterr()
    code = main(case.argv)
    out, err = capfd.readouterr()
    check_message(case, code, out, err)


def run_cli(argv: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "unetlab.cli.main", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("make_case", SUBPROCESS_CASES, ids=[c.__name__ for c in SUBPROCESS_CASES])
def test_bad_input_in_a_real_process(make_case, tmp_path) -> None:
    case = make_case(tmp_path)
    result = run_cli(case.argv, tmp_path)
    check_message(case, result.returncode, result.stdout, result.stderr)


def test_debug_shows_the_traceback(tmp_path, capfd) -> None:
    case = checkpoint_truncated(tmp_path)
    capfd.readouterr()
    code = main(["--debug", *case.argv])
    _, err = capfd.readouterr()
    assert code == 2
    assert "Traceback (most recent call last)" in err
    assert "load_checkpoint" in err  # the frames where it happened
    assert str(tmp_path / "model.pt") in err.splitlines()[-2]  # and the plain message last


def test_debug_shows_the_traceback_in_a_real_process(tmp_path, capfd) -> None:
    case = truncated_image(tmp_path)
    capfd.readouterr()
    assert main(case.argv) == 2
    plain = capfd.readouterr().err  # without --debug: checked in the catalogue
    debug = run_cli(["--debug", *case.argv], tmp_path)
    assert debug.returncode == 2
    assert "Traceback (most recent call last)" in debug.stderr
    assert "DataFileError" in debug.stderr
    assert plain.strip() in debug.stderr  # the same paragraph, after the frames


# ---------------------------------------------------------------- odd but legal inputs


def reference_label(checkpoint: Path, value: int, side: int) -> int:
    """Class of the top-left pixel of a constant ``side x side`` image, straight from torch.

    A 1-pixel image mirrored (replicated) to the network's input size is a constant image,
    so this is what ``predict`` must answer for a 1x1 image whose input side is ``side``.
    """
    payload = torch.load(checkpoint, weights_only=True)
    spec = payload["model"]
    model = build_model(spec["name"], spec["num_classes"], **spec["options"]).eval()
    model.load_state_dict(payload["state_dict"])
    x = torch.empty(1, 3, side, side)
    for c in range(3):
        x[0, c] = (value / 255 - MEAN[c]) / STD[c]
    with torch.no_grad():
        logits = model(x)
    return int(logits[0, :, 0, 0].argmax())


def smallest_valid_side(options: dict) -> int:
    """The smallest input side a model accepts, by trying (brute force, no size arithmetic)."""
    model = build_model("unet", 2, **options).eval()
    for side in range(1, 400):
        try:
            with torch.no_grad():
                model(torch.zeros(1, 3, side, side))
        except Exception:
            continue
        return side
    raise AssertionError("no valid side below 400")


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("value", [0, 90, 255])
def test_one_pixel_image_is_predicted(padding, value, tmp_path, capfd) -> None:
    options = {"base": 4, "depth": 2, "padding": padding}
    checkpoint = make_checkpoint(tmp_path / "model.pt", **options)
    image = tmp_path / "dot.png"
    Image.fromarray(np.full((1, 1, 3), value, np.uint8)).save(image)
    code = main(predict_argv(checkpoint, tmp_path, image))
    assert code == 0, capfd.readouterr().err
    with Image.open(tmp_path / "predictions" / "dot_mask.png") as mask:
        labels = np.asarray(mask)
    assert labels.shape == (1, 1)
    side = 4 if padding == "same" else smallest_valid_side(options)  # same: next multiple of 4
    assert int(labels[0, 0]) == reference_label(checkpoint, value, side)


def test_evaluate_image_without_foreground(tmp_path, capfd) -> None:
    """A validation image with nothing but background is ordinary data, not an error."""
    data = make_dataset(tmp_path / "ds")
    save_mask(data / "masks" / "s3.png", np.zeros((SIZE, SIZE)))
    checkpoint = make_checkpoint(tmp_path / "model.pt")
    code = main(evaluate_argv(checkpoint, data, tmp_path))
    err = capfd.readouterr().err
    assert code == 0, err
    assert (tmp_path / "evaluation" / "report.json").is_file()


HUGE = 20_000  # sides of the huge image (400 Mpx: 0.4 GB of 8-bit gray pixels)
HUGE_TILING_LIMIT_MB = 2000
"""Peak memory allowed while tiling a 20000 x 20000 gray image: Python and torch (~0.4 GB),
the decoded image (0.4 GB, briefly twice while Pillow hands it over), the 1-byte labels
(0.4 GB) and a few tiles' float buffers. One float32 copy of the whole image (1.6 GB), or the
whole float logits (3.2 GB for 2 classes), would exceed it."""


def peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident memory) of a running process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def huge_predict_setup(tmp: Path) -> tuple[Path, Path]:
    """A 1-channel, 1-level, width-1 U-Net (the cheapest network) and the huge gray image."""
    checkpoint = make_checkpoint(tmp / "model.pt", in_channels=1, base=1, depth=1)
    return checkpoint, constant_png(tmp / "huge.png", HUGE, HUGE)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_huge_image_is_tiled_in_bounded_memory(tmp_path) -> None:
    """``predict`` on 20000 x 20000: it must tile, not refuse or blow up; memory is watched
    from the start until a few tiles are done, then the run is stopped (finishing takes 2 to 9
    minutes on a 2-core machine; ``test_huge_image_predicted_to_the_end`` does it)."""
    import threading

    checkpoint, image = huge_predict_setup(tmp_path)
    assert image.stat().st_size < 1_000_000  # the file is small, the pixels are not
    argv = [*predict_argv(checkpoint, tmp_path, image)[:-1], "--tile", "512", "--overlap", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "unetlab.cli.main", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )
    chunks: list[bytes] = []
    reader = threading.Thread(
        target=lambda: chunks.extend(iter(lambda: os.read(process.stderr.fileno(), 4096), b"")),
        daemon=True,
    )
    reader.start()
    peak, done, total = 0.0, 0, 0
    deadline = time.monotonic() + 900  # a hang guard only: no test depends on the speed
    try:
        while process.poll() is None and done < 3 and time.monotonic() < deadline:
            peak = max(peak, peak_rss_mb(process.pid))
            progress = re.findall(rb"(\d+)/(\d+) \[", b"".join(chunks))
            if progress:
                done, total = map(int, progress[-1])
            time.sleep(0.1)
        peak = max(peak, peak_rss_mb(process.pid)) if process.poll() is None else peak
    finally:
        process.kill()
        process.wait()
        reader.join(timeout=5)
    stderr = b"".join(chunks).decode(errors="replace")
    assert "Traceback" not in stderr and "error" not in stderr.lower(), stderr
    assert done >= 3, f"3 tiles not done within the 900 s hang guard:\n{stderr[-2000:]}"
    assert total == (HUGE // 512 + 1) ** 2  # 40 x 40 tiles of 512 (the last row/column cut)
    print(f"20000 x 20000: peak {peak:.0f} MiB while tiling ({done} of {total} tiles done)")
    assert peak < HUGE_TILING_LIMIT_MB, f"peak {peak:.0f} MiB while tiling"


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("UNETLAB_HUGE_IMAGE_TEST") != "1",
    reason="2 min (idle) to 9 min (busy) and 2.6 GB on a 2-core CPU; "
    "set UNETLAB_HUGE_IMAGE_TEST=1 to run",
)
def test_huge_image_predicted_to_the_end(tmp_path, monkeypatch) -> None:
    """The whole 20000 x 20000 prediction through a real process: outputs and peak memory."""
    import resource

    checkpoint, image = huge_predict_setup(tmp_path)
    argv = [*predict_argv(checkpoint, tmp_path, image), "--tile", "4096", "--overlap", "0"]
    started = time.monotonic()
    result = run_cli(argv, tmp_path, timeout=3600)
    seconds = time.monotonic() - started
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"20000 x 20000 predict: {seconds:.0f} s, peak {peak_mb:.0f} MiB")
    assert result.returncode == 0, result.stderr[-3000:]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # restored after the test
    with Image.open(tmp_path / "predictions" / "huge_mask.png") as mask:
        assert mask.size == (HUGE, HUGE)
    # Python and torch, image, labels and the RGB overlay (0.4 + 0.4 + 0.4 + 1.2 GB) fit; a
    # second full-size copy of the overlay (Pillow's RGB image is 1.6 GB) would not
    assert peak_mb < 3500
