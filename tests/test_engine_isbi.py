"""A short real-data check: under a minute of training on ISBI 2012 beats every constant
prediction on the validation slices (mIoU and membrane Dice)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import shared_dataset

from unetlab.data import open_dataset
from unetlab.data.preprocess import Normalization
from unetlab.engine.checkpoint import load_checkpoint, model_from_checkpoint
from unetlab.engine.config import load_config
from unetlab.engine.evaluate import collect_confusion
from unetlab.engine.trainer import train


def constant_scores(masks: np.ndarray, label: int) -> tuple[float, float]:
    """mIoU and membrane (class 1) Dice of predicting ``label`` everywhere, from the masks."""
    membrane = masks == 1
    if label == 1:
        iou = [0.0, membrane.mean()]
        dice = 2 * membrane.sum() / (membrane.sum() + membrane.size)
    else:
        iou = [(~membrane).mean(), 0.0]
        dice = 0.0
    return float(np.mean(iou)), float(dice)


def _train_briefly(root, out):
    """The isbi2012 preset at base 8 on 128 px crops, 45 s of training."""
    cfg = load_config(
        preset="isbi2012",
        options={"data": {"root": str(root)}, "out_dir": str(out), "name": "isbi"},
        overrides=[
            "model.options.base=8", "data.patch_size=128", "data.batch_size=4",
            "data.repeat=2", "data.num_workers=0", "train.epochs=6", "train.val_every=6",
            "train.time_limit_minutes=0.75", "train.device=cpu", "train.num_predictions=0",
            "optim.lr=0.003", "schedule.warmup_steps=10",
        ],
    )
    return train(cfg)


@pytest.mark.realdata
@pytest.mark.slow
def test_a_minute_of_isbi_training_beats_constant_predictions(tmp_path):
    root = shared_dataset("isbi2012")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # steadier on a shared CPU
    try:
        result = _train_briefly(root, tmp_path)
    finally:
        torch.set_num_threads(threads)
    checkpoint = load_checkpoint(result.best_checkpoint)
    model = model_from_checkpoint(checkpoint)
    val = open_dataset(root, "val", normalization=Normalization.from_dict(checkpoint["data"]))
    scores = collect_confusion(
        model, torch.utils.data.DataLoader(val, batch_size=1), 2, "cpu"
    ).matrix.compute()
    masks = np.stack([val[i]["mask"].numpy() for i in range(len(val))])
    best_constant = [constant_scores(masks, label) for label in (0, 1)]
    miou, dice = float(scores["miou"]), float(scores["dice"][1])
    assert miou > max(s[0] for s in best_constant) + 0.1, (miou, best_constant)
    assert dice > max(s[1] for s in best_constant) + 0.1, (dice, best_constant)
