"""``unetlab data ...``: each subcommand end to end through the real entry point."""

from __future__ import annotations

import json

import numpy as np
from conftest import shared_dataset
from PIL import Image

from unetlab.cli.main import main
from unetlab.data.io import read_image, read_mask


def test_synth_split_and_check(tmp_path, capsys):
    root = tmp_path / "shapes"
    assert main(["data", "synth", str(root), "--train", "6", "--val", "2", "--size", "32"]) == 0
    assert len(list((root / "images").glob("*.png"))) == 8
    assert main(["data", "split", str(root)]) == 2  # splits exist: refused without --force
    assert "--force" in capsys.readouterr().err
    assert main(["data", "split", str(root), "--val", "0.25", "--force", "--seed", "1"]) == 0
    assert len((root / "splits" / "val.txt").read_text().split()) == 2
    capsys.readouterr()
    assert main(["data", "check", str(root)]) == 0
    out = capsys.readouterr().out
    assert "no problems found" in out and "3 triangle" in out and "32x32 (6)" in out


def test_check_lists_every_problem_and_exits_2(tmp_path, capsys):
    root = tmp_path / "shapes"
    main(["data", "synth", str(root), "--train", "3", "--val", "1", "--size", "24"])
    (root / "images" / "shape_0001.png").write_bytes(b"")
    Image.fromarray(np.full((24, 24), 9, np.uint8)).save(root / "masks" / "shape_0002.png")
    capsys.readouterr()
    assert main(["data", "check", str(root)]) == 2
    captured = capsys.readouterr()
    assert "class pixel frequencies" in captured.out  # the statistics still print
    assert "2 problems" in captured.err and "Traceback" not in captured.err
    assert "shape_0001.png: empty file" in captured.err
    assert "shape_0002.png: mask values 9" in captured.err


def test_check_real_dataset(capsys):
    root = shared_dataset("isbi2012")
    assert main(["data", "check", str(root), "--classes", "2"]) == 0
    out = capsys.readouterr().out
    assert "1 membrane" in out and "22.89%" in out  # README: 22.89% membrane in train


def test_labelme_fix_binary_and_tiff(tmp_path, capsys):
    image = np.zeros((12, 16, 3), np.uint8)
    Image.fromarray(image).save(tmp_path / "a.png")
    shape = {"label": "dog", "shape_type": "rectangle", "points": [[2, 2], [9, 6]]}
    document = {"shapes": [shape], "imagePath": "a.png", "imageHeight": 12, "imageWidth": 16}
    (tmp_path / "a.json").write_text(json.dumps(document))
    out = tmp_path / "ds"
    assert (
        main(["data", "labelme", str(tmp_path), "--classes", "bg,cat,dog", "--out", str(out)]) == 0
    )
    assert (read_mask(out / "masks" / "a.png")[2:7, 2:10] == 2).all()
    assert main(["data", "labelme", str(tmp_path), "--classes", "bg,cat", "--out", str(out)]) == 2
    assert "'dog', which is not a class" in capsys.readouterr().err

    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(np.array([[0, 255]], np.uint8)).save(masks / "m.png")
    assert main(["data", "fix-binary", str(masks)]) == 0
    assert read_mask(masks / "m.png").tolist() == [[0, 1]]

    pages = [Image.fromarray(np.full((3, 4), v, np.uint16)) for v in (7, 4000)]
    pages[0].save(tmp_path / "s.tif", save_all=True, append_images=pages[1:])
    assert main(["data", "tiff", str(tmp_path / "s.tif"), "--out", str(tmp_path / "slices")]) == 0
    assert read_image(tmp_path / "slices" / "01.png")[0, 0, 0] == 4000


def test_missing_dataset_is_one_line_not_a_traceback(tmp_path, capsys):
    assert main(["data", "check", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "dataset folder not found" in err and "Traceback" not in err
