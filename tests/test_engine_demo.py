"""``unetlab demo`` end to end with a few seconds of training: data, run, evaluation, summary.

The full one-minute demo (val mIoU > 0.7) is measured by hand and reported; here the wiring is
checked: every file the summary points to exists.
"""

from __future__ import annotations

import json

import pytest
import torch

from unetlab.cli.main import main


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_demo_writes_everything_it_announces(tmp_path, capsys, one_thread):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--minutes", "0.05", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "demo finished: val mIoU" in printed
    run = out / "runs" / "shapes-unet"
    summary = printed[printed.index("demo finished"):].splitlines()
    for label in ("data:", "run folder:", "checkpoint:", "curves:", "predictions:"):
        line = next(row for row in summary if row.strip().startswith(label))
        assert (tmp_path / line.split(":", 1)[1].strip()).exists(), label
    assert (out / "shapes" / "splits" / "val.txt").is_file()
    assert (run / "checkpoints" / "best.pt").is_file()
    assert list((run / "predictions").glob("*_mask.png"))
    report = json.loads((run / "evaluation" / "val" / "report.json").read_text())
    assert report["split"] == "val" and report["num_images"] == 50
    assert f"val mIoU {report['miou']:.3f}" in printed
