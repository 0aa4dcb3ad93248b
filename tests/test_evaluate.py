"""Evaluation: the measuring loop against brute force, report.json against hand-counted pixels,
the files and the command line."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage
from skimage.metrics import adapted_rand_error as skimage_adapted_rand_error
from torch import nn

import unetlab.artifacts.checkpoint as checkpoint_module
from unetlab.cli.main import main
from unetlab.engine.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from unetlab.engine.evaluate import collect_confusion, evaluate, resolve_boundary_class
from unetlab.engine.plots import PANEL_MARGIN, panel_origin
from unetlab.errors import UnetlabError
from unetlab.models import build_model

from test_inference_tta import dihedral_mean  # isort: skip

PALETTE = [[0, 0, 0], [220, 40, 40], [40, 200, 40]]


# ---------------------------------------------------------------- helpers


def brute_force_confusion(pred: np.ndarray, truth: np.ndarray, k: int) -> np.ndarray:
    """Pixel by pixel, skipping 255: the reference the streaming matrix must equal."""
    matrix = np.zeros((k, k), dtype=np.int64)
    for t, p in zip(truth.ravel().tolist(), pred.ravel().tolist(), strict=True):
        if t != 255:
            matrix[t, p] += 1
    return matrix


def brute_force_rand_precision_recall(pred_regions, truth_regions):
    """Over all pairs of pixels in truth regions (label > 0): of the pairs together in the
    prediction, the share also together in the truth (precision), and the converse (recall)."""
    keep = truth_regions.ravel() > 0
    t, p = truth_regions.ravel()[keep], pred_regions.ravel()[keep]
    same_t = t[:, None] == t[None, :]
    same_p = p[:, None] == p[None, :]
    off_diagonal = ~np.eye(len(t), dtype=bool)
    both = (same_t & same_p & off_diagonal).sum()
    return both / (same_p & off_diagonal).sum(), both / (same_t & off_diagonal).sum()


def write_dataset(root, images: dict, masks: dict, class_names, split="val"):
    """The plain layout: images/<id>.png, masks/<id>.png, splits/<split>.txt, classes.txt."""
    for folder in ("images", "masks", "splits"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for sample_id, image in images.items():
        Image.fromarray(image).save(root / "images" / f"{sample_id}.png")
        Image.fromarray(masks[sample_id].astype(np.uint8)).save(root / "masks" / f"{sample_id}.png")
    (root / "splits" / f"{split}.txt").write_text("\n".join(images) + "\n")
    (root / "classes.txt").write_text("\n".join(class_names) + "\n")
    return root


class OracleNet(nn.Module):
    """Predicts the class written into its grey input (pixel value 100 * class).

    With mean 0 and std 1 in the checkpoint the network sees ``value / 255``. ``channels=1``
    gives a sigmoid model (logit +-10), otherwise one-hot logits (10 for the class).
    """

    size_multiple = 1
    padding = "same"

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        classes = torch.round(x[:, 0] * 255.0 / 100.0).long()
        if self.channels == 1:
            return (classes.float() * 20.0 - 10.0)[:, None]
        return F.one_hot(classes, self.channels).permute(0, 3, 1, 2).float() * 10.0


def oracle_checkpoint(tmp_path, monkeypatch, channels: int, class_names) -> str:
    """A checkpoint file whose model is rebuilt as OracleNet(channels)."""
    payload = {
        "model": {"name": "oracle", "num_classes": channels, "in_channels": 1, "options": {}},
        "state_dict": {},
        "data": {
            "class_names": class_names,
            "class_colors": PALETTE[: len(class_names)],
            "mean": [0.0],
            "std": [1.0],
        },
    }
    path = save_checkpoint(payload, tmp_path / "run" / "checkpoints" / "best.pt")
    monkeypatch.setattr(checkpoint_module, "model_from_checkpoint", lambda c: OracleNet(channels))
    return str(path)


def tiny_unet_checkpoint(path, num_classes=3, in_channels=3) -> str:
    model = build_model("unet", num_classes, in_channels=in_channels, base=4, depth=2)
    payload = {
        "model": model.spec,
        "state_dict": model.state_dict(),
        "data": {
            "class_names": ["background", "circle", "square"][:num_classes],
            "class_colors": PALETTE[:num_classes],
            "mean": [0.5] * in_channels,
            "std": [0.25] * in_channels,
        },
        "config": {},
        "epoch": 1,
    }
    return str(save_checkpoint(payload, path))


def random_dataset(root, n=2, size=(16, 16), num_classes=3, max_value=None):
    rng = np.random.default_rng(1)
    images = {f"s{i}": rng.integers(0, 256, (*size, 3), dtype=np.uint8) for i in range(n)}
    top = num_classes if max_value is None else max_value + 1
    masks = {key: rng.integers(0, top, size).astype(np.uint8) for key in images}
    return write_dataset(root, images, masks, ["background", "circle", "square"][:num_classes])


# ---------------------------------------------------------------- collect_confusion


def test_collect_confusion_equals_brute_force_and_the_loss_equals_torch():
    model = build_model("unet", 3, in_channels=1, base=4, depth=2)
    model.train()
    model.encoder_like = nn.BatchNorm2d(1)  # a submodule kept in eval mode (a frozen encoder)
    model.encoder_like.eval()
    gen = torch.Generator().manual_seed(3)
    batches = []
    for n, (h, w) in ((2, (16, 16)), (1, (12, 20)), (2, (13, 18))):  # the last: no multiple of 4
        mask = torch.randint(0, 3, (n, h, w), generator=gen)
        mask[:, 0, :3] = 255
        images = torch.randn(n, 1, h, w, generator=gen)
        batches.append({"image": images, "mask": mask, "id": [f"{h}x{w}-{i}" for i in range(n)]})

    def loss_fn(logits, target, weight=None):
        return F.cross_entropy(logits, target, ignore_index=255)

    measured = collect_confusion(model, batches, 3, "cpu", loss_fn=loss_fn)

    assert model.training and not model.encoder_like.training  # each module's mode restored
    model.eval()
    expected = np.zeros((3, 3), dtype=np.int64)
    loss_sum = 0.0
    with torch.no_grad():
        for batch in batches:
            x, truth = batch["image"], batch["mask"]
            h, w = x.shape[-2:]
            padded = F.pad(x, (0, (-w) % 4, 0, (-h) % 4), mode="reflect")
            logits = model(padded)[..., :h, :w]
            expected += brute_force_confusion(logits.argmax(1).numpy(), truth.numpy(), 3)
            loss_sum += F.cross_entropy(logits, truth, ignore_index=255).item() * len(x)
    np.testing.assert_array_equal(measured.matrix.matrix, expected)
    assert measured.num_images == 5
    assert measured.loss == pytest.approx(loss_sum / 5, rel=1e-5)


class ConstantProbability(nn.Module):
    """A one-channel model that says p(foreground) = 0.7 everywhere."""

    size_multiple = 1

    def forward(self, x):
        return torch.full_like(x[:, :1], float(np.log(0.7 / 0.3)))


@pytest.mark.parametrize(("threshold", "predicted"), [(0.5, 1), (0.8, 0)])
def test_binary_models_use_the_threshold(threshold, predicted):
    mask = torch.tensor([[[0, 1, 1, 255]]])
    batch = {"image": torch.zeros(1, 1, 1, 4), "mask": mask, "id": ["a"]}
    measured = collect_confusion(ConstantProbability(), [batch], 2, "cpu", threshold=threshold)
    expected = np.zeros((2, 2), dtype=np.int64)
    expected[0, predicted] = 1
    expected[1, predicted] = 2
    np.testing.assert_array_equal(measured.matrix.matrix, expected)


DISTRIBUTED_SCRIPT = """
import sys
import torch
import torch.nn.functional as F
from unetlab.engine.evaluate import collect_confusion
from unetlab.models import build_model

def worker(rank, folder):
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{folder}/init", rank=rank, world_size=2
    )
    model = build_model("unet", 2, in_channels=1, base=4, depth=1)
    model.load_state_dict(torch.load(f"{folder}/model.pt", weights_only=True))
    batches = torch.load(f"{folder}/batches.pt", weights_only=True)[rank::2]  # 2 vs 1 batches
    ce = lambda logits, target, weight=None: F.cross_entropy(logits, target, ignore_index=255)
    measured = collect_confusion(model, batches, 2, "cpu", loss_fn=ce)
    result = {"matrix": torch.from_numpy(measured.matrix.matrix), "loss": measured.loss}
    torch.save(result, f"{folder}/result.{rank}")
    torch.distributed.destroy_process_group()

if __name__ == "__main__":
    torch.multiprocessing.start_processes(worker, args=(sys.argv[1],), nprocs=2,
                                          start_method="fork")
"""


def test_distributed_ranks_get_the_global_matrix_and_loss(tmp_path):
    gen = torch.Generator().manual_seed(5)
    batches = [
        {
            "image": torch.randn(1, 1, 8, 8, generator=gen),
            "mask": torch.randint(0, 2, (1, 8, 8), generator=gen),
            "id": [str(i)],
        }
        for i in range(3)
    ]
    model = build_model("unet", 2, in_channels=1, base=4, depth=1)
    torch.save(batches, tmp_path / "batches.pt")
    torch.save(model.state_dict(), tmp_path / "model.pt")
    # A fresh interpreter that forks: fast (one torch import) and safe (this process's OpenMP
    # threads are not inherited mid-use).
    done = subprocess.run(
        [sys.executable, "-c", DISTRIBUTED_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    def ce(logits, target, weight=None):
        return F.cross_entropy(logits, target, ignore_index=255)

    whole = collect_confusion(model, batches, 2, "cpu", loss_fn=ce)
    for rank in range(2):
        result = torch.load(tmp_path / f"result.{rank}", weights_only=True)
        np.testing.assert_array_equal(result["matrix"].numpy(), whole.matrix.matrix)
        assert result["loss"] == pytest.approx(whole.loss, rel=1e-5)


# ---------------------------------------------------------------- evaluate


def test_a_model_predicting_the_truth_scores_perfectly(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    masks = {f"m{i}": rng.integers(0, 2, (12, 16)).astype(np.uint8) for i in range(2)}
    images = {key: (mask * 100).astype(np.uint8) for key, mask in masks.items()}
    root = write_dataset(tmp_path / "data", images, masks, ["cell", "membrane"])
    checkpoint = oracle_checkpoint(tmp_path, monkeypatch, 2, ["cell", "membrane"])

    report = evaluate(checkpoint, root, out_dir=tmp_path / "out", num_panels=0)

    assert report.scores["miou"] == 1.0 and report.scores["pixel_accuracy"] == 1.0
    assert report.region_scores["pixel_error"] == 0.0
    assert report.region_scores["adapted_rand_error"] == pytest.approx(0.0, abs=1e-12)


# Two 3x4 images whose every pixel is known (classes: 0 cell, 1 membrane, 255 ignored).
TRUTH_A = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0]])
PRED_A = np.array([[0, 1, 1, 1], [0, 0, 1, 0], [0, 0, 0, 0]])
TRUTH_B = np.array([[1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 255, 255]])
PRED_B = np.array([[1, 1, 0, 1], [0, 0, 0, 1], [0, 0, 1, 1]])
# Counted by hand over both images (ignored pixels left out), rows truth, columns prediction:
# A: 7 cell->cell, 1 cell->membrane, 1 membrane->cell, 3 membrane->membrane;
# B: 5, 1, 1, 3. Total [[12, 2], [2, 6]], 22 scored pixels.
HAND_CONFUSION = np.array([[12, 2], [2, 6]])
HAND = {
    "iou": [12 / 16, 6 / 10],
    "recall": [12 / 14, 6 / 8],
    "precision": [12 / 14, 6 / 8],
    "dice": [24 / 28, 12 / 16],
    "miou": (12 / 16 + 6 / 10) / 2,
    "mpa": (12 / 14 + 6 / 8) / 2,
    "pixel_accuracy": 18 / 22,
    "mean_dice": (24 / 28 + 12 / 16) / 2,
    # per image: A 2 wrong of 12, B 2 wrong of 10 scored; averaged over the images
    "pixel_error": (2 / 12 + 2 / 10) / 2,
}
SCALE = (8, 16)  # each pixel becomes 8 x 16, so the panel pictures are 24 x 64
AREA = SCALE[0] * SCALE[1]


def _upscaled(array):
    return np.kron(array, np.ones(SCALE, dtype=np.int64))


def test_report_json_equals_hand_counted_pixels(tmp_path, monkeypatch):
    truths = {"a": _upscaled(TRUTH_A), "b": _upscaled(TRUTH_B)}
    preds = {"a": _upscaled(PRED_A), "b": _upscaled(PRED_B)}
    images = {key: (pred * 100).astype(np.uint8) for key, pred in preds.items()}
    root = write_dataset(tmp_path / "data", images, truths, ["cell", "membrane"])
    checkpoint = oracle_checkpoint(tmp_path, monkeypatch, 1, ["cell", "membrane"])

    report = evaluate(checkpoint, root, split="val", num_panels=1)

    out = tmp_path / "run" / "evaluation" / "val"  # RUN/evaluation/<split> by default
    assert report.out_dir == out
    data = json.loads((out / "report.json").read_text())
    assert data["checkpoint"] == checkpoint
    assert data["data_root"] == str(root.resolve())
    assert (data["split"], data["num_images"]) == ("val", 2)
    assert data["class_names"] == ["cell", "membrane"]
    assert data["threshold"] == 0.5
    np.testing.assert_array_equal(data["confusion_matrix"], HAND_CONFUSION * AREA)
    for key in ("iou", "recall", "precision", "dice"):
        got = [row[key] for row in data["per_class"]]
        np.testing.assert_allclose(got, HAND[key], rtol=1e-9, err_msg=key)
    assert [row["pixels"] for row in data["per_class"]] == [14 * AREA, 8 * AREA]
    for key in ("miou", "mpa", "pixel_accuracy", "mean_dice"):
        assert data[key] == pytest.approx(HAND[key], rel=1e-9), key

    binary = data["binary"]
    assert (binary["boundary_class"], binary["boundary_class_name"]) == (1, "membrane")
    assert binary["pixel_error"] == pytest.approx(HAND["pixel_error"], rel=1e-9)
    # Rand reference: regions = 4-connected components of non-membrane pixels (ignored truth
    # pixels belong to no region); pairs of scored pixels counted one by one; error vs skimage.
    reference = []
    for key in ("a", "b"):
        truth_regions = ndimage.label((truths[key] != 1) & (truths[key] != 255))[0]
        pred_regions = ndimage.label(preds[key] != 1)[0]
        error = skimage_adapted_rand_error(truth_regions, pred_regions)[0]
        reference.append((error, *brute_force_rand_precision_recall(pred_regions, truth_regions)))
    reference = np.mean(reference, axis=0)
    assert binary["adapted_rand_error"] == pytest.approx(reference[0], rel=1e-9)
    assert binary["rand_precision"] == pytest.approx(reference[1], rel=1e-9)
    assert binary["rand_recall"] == pytest.approx(reference[2], rel=1e-9)
    assert binary["adapted_rand_error"] > 0.0

    with Image.open(out / "confusion_matrix.png") as figure:
        assert figure.format == "PNG"

    # per image, by hand: A [[7, 1], [1, 3]], B [[5, 1], [1, 3]] -> B is the worse
    hand_rows = {
        "a": {"iou": [7 / 9, 3 / 5], "dice": [14 / 16, 6 / 8], "pixel_accuracy": 10 / 12,
              "pixel_error": 2 / 12},
        "b": {"iou": [5 / 7, 3 / 5], "dice": [10 / 12, 6 / 8], "pixel_accuracy": 8 / 10,
              "pixel_error": 2 / 10},
    }  # fmt: skip
    assert [row["id"] for row in data["per_image"]] == ["b", "a"]  # worst (lowest mIoU) first
    for row in data["per_image"]:
        hand = hand_rows[row["id"]]
        np.testing.assert_allclose(row["iou"], hand["iou"], rtol=1e-12)
        np.testing.assert_allclose(row["dice"], hand["dice"], rtol=1e-12)
        assert row["miou"] == pytest.approx(np.mean(hand["iou"]), rel=1e-12)
        assert row["pixel_accuracy"] == pytest.approx(hand["pixel_accuracy"], rel=1e-12)
        assert row["pixel_error"] == pytest.approx(hand["pixel_error"], rel=1e-12)
        assert (row["width"], row["height"]) == (4 * SCALE[1], 3 * SCALE[0])
    assert report.per_image == data["per_image"]
    assert "worst images by mIoU: b (65.71%), a (68.89%)" in report.summary()

    # only the worst image gets a panel (num_panels=1): image | truth | prediction | errors
    assert sorted(p.name for p in (out / "panels").iterdir()) == ["1_b.png"]
    with Image.open(out / "panels" / "1_b.png") as opened:
        panel = np.asarray(opened.convert("RGB"))
    h, w = truths["b"].shape
    assert panel.shape[1] >= 4 * w + 5 * PANEL_MARGIN  # wider when the error key needs it
    x0, y0 = panel_origin()
    lut = np.zeros((256, 3), np.uint8)
    lut[:2], lut[255] = PALETTE[:2], (224, 224, 192)  # ignored: the VOC colour map's 255
    picture = lambda i: panel[y0 : y0 + h, x0 + i * (w + PANEL_MARGIN) :][:, :w]  # noqa: E731
    np.testing.assert_array_equal(picture(0)[..., 0], images["b"])
    np.testing.assert_array_equal(picture(1), lut[truths["b"]])
    np.testing.assert_array_equal(picture(2), lut[preds["b"]])
    # the error map of B by hand (membrane = positive): correct pixels show the image faded
    # (170 + grey // 3: 170 where the image is 0, 203 where it is 100), one false negative,
    # one false positive, two ignored pixels
    correct0, correct1 = (170,) * 3, (203,) * 3
    fn, fp, ignored = (0, 114, 178), (213, 94, 0), (150, 150, 150)
    hand_errors = np.array(
        [[correct1, correct1, fn, correct1],
         [correct0, correct0, correct0, fp],
         [correct0, correct0, ignored, ignored]], np.uint8,
    )  # fmt: skip
    np.testing.assert_array_equal(picture(3), np.kron(hand_errors, np.ones((*SCALE, 1), np.uint8)))


def test_per_image_csv_lists_every_image_worst_first(tmp_path, monkeypatch):
    """per_image.csv: one row per image, ranked by mIoU, against scores counted by brute force
    (a pixel loop over the confusion matrix) for three classes, an absent class left empty."""
    import csv

    rng = np.random.default_rng(5)
    truths = {f"s{i}": rng.integers(0, 2, (6, 7)) for i in range(4)}  # class 2 never in truth
    preds = {key: np.where(rng.random(t.shape) < 0.2 * i, (t + 1) % 3, t)
             for i, (key, t) in enumerate(truths.items())}  # fmt: skip
    images = {key: (pred * 100).astype(np.uint8) for key, pred in preds.items()}
    names = ["bg", "a, b", "c"]  # a comma in a class name: the CSV quotes it
    root = write_dataset(tmp_path / "data", images, truths, names)
    checkpoint = oracle_checkpoint(tmp_path, monkeypatch, 3, names)

    report = evaluate(checkpoint, root, out_dir=tmp_path / "out", num_panels=2)

    with (tmp_path / "out" / "per_image.csv").open(newline="") as handle:
        table = list(csv.reader(handle))
    header = table[0]
    per_class = [f"{kind} {name}" for kind in ("iou", "dice") for name in names]
    scores = ["miou", "mean_dice", "pixel_accuracy"]
    assert header == ["rank", "id", "width", "height", *scores, *per_class]
    expected = {}
    for key in truths:
        matrix = brute_force_confusion(preds[key], truths[key], 3)
        tp, truth_px, pred_px = np.diag(matrix), matrix.sum(1), matrix.sum(0)
        union = truth_px + pred_px - tp
        iou = [tp[c] / union[c] if union[c] else None for c in range(3)]
        dice = [2 * tp[c] / (truth_px[c] + pred_px[c]) if union[c] else None for c in range(3)]
        defined = [v for v in iou if v is not None]
        expected[key] = (sum(defined) / len(defined), iou, dice, tp.sum() / matrix.sum())
    order = sorted(truths, key=lambda key: expected[key][0])
    assert [row[1] for row in table[1:]] == order and [row[0] for row in table[1:]] == list("1234")
    for row in table[1:]:
        miou, iou, dice, accuracy = expected[row[1]]
        assert row[2:4] == ["7", "6"]
        assert float(row[4]) == pytest.approx(miou, rel=1e-12)
        assert float(row[6]) == pytest.approx(accuracy, rel=1e-12)
        for cell, value in zip(row[7:], iou + dice, strict=True):
            assert (cell == "") if value is None else float(cell) == pytest.approx(value, rel=1e-12)
    assert [row["id"] for row in report.per_image] == order
    panels = sorted(p.name for p in (tmp_path / "out" / "panels").iterdir())
    assert panels == [f"1_{order[0]}.png", f"2_{order[1]}.png"]


@pytest.mark.parametrize(
    ("names", "choice", "expected"),
    [
        (["cell", "membrane"], None, 1),
        (["Membrane", "cell"], None, 0),
        (["background", "horse"], None, 0),
        (["cell", "membrane"], "cell", 0),
        (["cell", "membrane"], "1", 1),
        (["cell", "membrane"], 0, 0),
    ],
)
def test_boundary_class_choice(names, choice, expected):
    assert resolve_boundary_class(names, choice) == expected


@pytest.mark.parametrize("choice", ["nucleus", 2, "-1"])
def test_unknown_boundary_class_is_a_clear_error(choice):
    with pytest.raises(UnetlabError, match=r"boundary class|no class named"):
        resolve_boundary_class(["cell", "membrane"], choice)


def test_masks_with_classes_beyond_the_checkpoint_are_refused(tmp_path):
    checkpoint = tiny_unet_checkpoint(tmp_path / "model.pt", num_classes=2)
    root = random_dataset(tmp_path / "data", num_classes=2, max_value=4)
    with pytest.raises(UnetlabError, match=r"\[2, 3, 4\]|2, 3, 4"):
        evaluate(checkpoint, root, out_dir=tmp_path / "out")


def test_images_of_different_sizes_share_a_batch_as_in_predict(tmp_path):
    """Like predict, the batch size groups same-sized images; other sizes run on their own."""
    checkpoint = tiny_unet_checkpoint(tmp_path / "model.pt")
    root = random_dataset(tmp_path / "data", n=3)
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(root / "images" / "s1.png")
    Image.fromarray(np.zeros((12, 16), np.uint8)).save(root / "masks" / "s1.png")
    batched = evaluate(checkpoint, root, out_dir=tmp_path / "a", batch_size=2, num_panels=0)
    single = evaluate(checkpoint, root, out_dir=tmp_path / "b", batch_size=1, num_panels=0)
    assert single.confusion.sum() == 2 * 16 * 16 + 12 * 16
    np.testing.assert_array_equal(batched.confusion, single.confusion)


def test_notes_name_other_dataset_classes_and_absent_classes(tmp_path):
    checkpoint = tiny_unet_checkpoint(tmp_path / "model.pt", num_classes=3)
    root = random_dataset(tmp_path / "data", num_classes=2)  # classes.txt: background, circle
    report = evaluate(checkpoint, root, out_dir=tmp_path / "out", num_panels=0)
    assert any("class list (background, circle) differs" in note for note in report.notes)
    assert any("square never occur" in note for note in report.notes)
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["notes"] == report.notes
    assert saved["per_class"][2]["recall"] is None  # undefined (NaN) is written as null


def test_threshold_is_refused_for_a_multiclass_model(tmp_path):
    checkpoint = tiny_unet_checkpoint(tmp_path / "model.pt", num_classes=3)
    root = random_dataset(tmp_path / "data")
    with pytest.raises(UnetlabError, match="threshold"):
        evaluate(checkpoint, root, threshold=0.3)


# ---------------------------------------------------------------- command line


def test_cli_evaluates_a_run_folder(tmp_path, capsys):
    run = tmp_path / "runs" / "tiny"
    tiny_unet_checkpoint(run / "checkpoints" / "best.pt")
    root = random_dataset(tmp_path / "data", n=2, size=(20, 24))  # 20 is no multiple of 4

    code = main(["evaluate", str(run), "--data", str(root), "--device", "cpu", "--batch-size", "2"])

    out = run / "evaluation" / "val"
    printed = capsys.readouterr().out
    assert code == 0, printed
    data = json.loads((out / "report.json").read_text())
    assert data["num_images"] == 2 and data["binary"] is None
    assert np.sum(data["confusion_matrix"]) == 2 * 20 * 24
    worst_first = [row["id"] for row in data["per_image"]]
    assert sorted(worst_first) == ["s0", "s1"]
    assert sorted(p.name for p in (out / "panels").iterdir()) == [
        f"{rank}_{sample_id}.png" for rank, sample_id in enumerate(worst_first, start=1)
    ]
    with Image.open(out / "confusion_matrix.png") as figure:
        assert figure.size[0] > 200
    assert "mIoU" in printed and str(out / "report.json") in printed
    for name in ("background", "circle", "square"):
        assert name in printed


def plain_and_flip_averaged_confusions(checkpoint, root) -> dict[bool, np.ndarray]:
    """Brute-force confusion matrices of images s0, s1: the plain output (False) and the mean
    over the four flips written out with torch.flip (True); normalisation mean 0.5, std 0.25."""
    model = model_from_checkpoint(load_checkpoint(checkpoint)).eval()
    expected = {False: np.zeros((3, 3), np.int64), True: np.zeros((3, 3), np.int64)}
    for sample_id in ("s0", "s1"):
        image = np.array(Image.open(root / "images" / f"{sample_id}.png"))
        truth = np.array(Image.open(root / "masks" / f"{sample_id}.png"))
        x = (torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255 - 0.5) / 0.25
        with torch.no_grad():
            for tta, logits in ((False, model(x)), (True, dihedral_mean(model, x))):
                expected[tta] += brute_force_confusion(logits.argmax(1)[0].numpy(), truth, 3)
    return expected


def test_cli_tta_scores_the_flip_averaged_prediction(tmp_path):
    """A random U-Net is not flip-equivariant: ``--tta`` must score the mean of its outputs on
    the four flips (written out here with torch.flip), and without it the plain output."""
    checkpoint = tiny_unet_checkpoint(tmp_path / "model.pt")
    root = random_dataset(tmp_path / "data", n=2, size=(16, 20))  # multiples of 4: no padding
    expected = plain_and_flip_averaged_confusions(checkpoint, root)
    assert not np.array_equal(expected[False], expected[True])  # the check can tell them apart

    for tta in (False, True):
        out = tmp_path / f"out-{tta}"
        argv = ["evaluate", checkpoint, "--data", str(root), "--out", str(out), "--panels", "0",
                "--device", "cpu", *(["--tta"] if tta else [])]
        assert main(argv) == 0
        data = json.loads((out / "report.json").read_text())
        np.testing.assert_array_equal(data["confusion_matrix"], expected[tta])


def test_the_runs_own_tta_is_the_default_and_no_tta_turns_it_off(tmp_path):
    """A run whose config chose ``inference.tta: flips`` (as a plan does) is evaluated, predicted
    and exported with flip TTA unless the user says ``--no-tta``: the confusion matrices equal
    the hand-written flip average and the plain output."""
    checkpoint = tiny_unet_checkpoint(tmp_path / "model.pt")
    payload = load_checkpoint(checkpoint)
    payload["config"] = {"inference": {"tta": "flips"}}
    payload.pop("path", None)
    save_checkpoint(payload, checkpoint)
    root = random_dataset(tmp_path / "data", n=2, size=(16, 20))
    expected = plain_and_flip_averaged_confusions(checkpoint, root)
    assert not np.array_equal(expected[False], expected[True])

    for flags, tta in (([], True), (["--no-tta"], False), (["--tta"], True)):
        out = tmp_path / f"out-{'-'.join(flags) or 'default'}"
        argv = ["evaluate", checkpoint, "--data", str(root), "--out", str(out), "--panels", "0",
                "--device", "cpu", *flags]
        assert main(argv) == 0
        data = json.loads((out / "report.json").read_text())
        np.testing.assert_array_equal(data["confusion_matrix"], expected[tta])
        assert data["tta"] == ("flips" if tta else False)

    from unetlab.inference import open_model

    image = np.array(Image.open(root / "images" / "s0.png"))
    assert open_model(checkpoint, "cpu").options.tta == "flips"
    assert open_model(checkpoint, "cpu", tta=False).options.tta is False
    pytest.importorskip("onnxruntime")
    from unetlab.export import export_onnx

    exported = tmp_path / "model.onnx"
    export_onnx(checkpoint, exported)
    onnx_predictor = open_model(exported)
    assert onnx_predictor.card.tta == "flips" and onnx_predictor.options.tta == "flips"
    torch_labels = open_model(checkpoint, "cpu").predict(image).labels
    np.testing.assert_array_equal(onnx_predictor.predict(image).labels, torch_labels)


def test_cli_split_and_boundary_class_choose_what_is_scored(tmp_path, monkeypatch):
    """``--split test`` reads splits/test.txt and writes evaluation/test; ``--boundary-class
    cell`` makes the cells the separators of the Rand regions, as skimage scores them."""
    truth, pred = _upscaled(TRUTH_A), _upscaled(PRED_A)
    root = write_dataset(tmp_path / "data", {"a": (pred * 100).astype(np.uint8)}, {"a": truth},
                         ["cell", "membrane"], split="test")
    checkpoint = oracle_checkpoint(tmp_path, monkeypatch, 2, ["cell", "membrane"])
    default_out = tmp_path / "run" / "evaluation" / "test"  # RUN/evaluation/<split>
    reports = {}
    for choice, out in ((None, []), ("cell", ["--boundary-class", "cell", "--out", "cell"])):
        argv = ["evaluate", checkpoint, "--data", str(root), "--split", "test", "--panels", "0",
                *out]
        monkeypatch.chdir(tmp_path)
        assert main(argv) == 0
        folder = tmp_path / "cell" if choice else default_out
        reports[choice] = json.loads((folder / "report.json").read_text())
    for choice, boundary in ((None, 1), ("cell", 0)):
        binary = reports[choice]["binary"]
        assert reports[choice]["split"] == "test" and binary["boundary_class"] == boundary
        expected = skimage_adapted_rand_error(
            ndimage.label(truth != boundary)[0], ndimage.label(pred != boundary)[0]
        )[0]
        assert binary["adapted_rand_error"] == pytest.approx(expected, rel=1e-9)
    assert reports[None]["binary"]["adapted_rand_error"] != pytest.approx(
        reports["cell"]["binary"]["adapted_rand_error"]
    )


def test_cli_reports_bad_masks_as_a_user_error(tmp_path, capsys):
    checkpoint = tiny_unet_checkpoint(tmp_path / "model.pt", num_classes=2)
    root = random_dataset(tmp_path / "data", num_classes=2, max_value=3)
    code = main(["evaluate", checkpoint, "--data", str(root), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error:") and "Traceback" not in err


def test_cli_help_lists_the_options(capsys):
    assert main(["evaluate", "--help"]) == 0
    text = capsys.readouterr().out
    for option in (
        "--data",
        "--split",
        "--out",
        "--device",
        "--batch-size",
        "--threshold",
        "--tta",
        "--tile",
        "--precision",
    ):
        assert option in text


class DarkIsMembrane(nn.Module):
    """One-channel model: membrane where the 8-bit grey value is at most 100 (EM membranes are
    dark). Its input is normalised with mean 0.5, std 0.5."""

    size_multiple = 1

    def forward(self, x):
        cut = (100.5 / 255 - 0.5) / 0.5
        return (cut - x) * 100.0


@pytest.mark.realdata
def test_isbi2012_em_scores_equal_scipy_and_skimage(tmp_path, monkeypatch):
    from conftest import shared_dataset

    root = shared_dataset("isbi2012")
    payload = {
        "model": {"name": "dark", "num_classes": 1, "in_channels": 1, "options": {}},
        "state_dict": {},
        "data": {"class_names": ["cell", "membrane"], "mean": [0.5], "std": [0.5]},
    }
    checkpoint = save_checkpoint(payload, tmp_path / "dark.pt")
    monkeypatch.setattr(checkpoint_module, "model_from_checkpoint", lambda c: DarkIsMembrane())

    report = evaluate(checkpoint, root, split="val", num_panels=1)

    ids = (root / "splits" / "val.txt").read_text().split()
    rows = {row["id"]: row for row in report.region_scores["per_image"]}
    assert sorted(rows) == sorted(ids) and report.region_scores["boundary_class"] == 1
    for sample_id in ids:
        image = np.asarray(Image.open(root / "images" / f"{sample_id}.png"))
        truth = np.asarray(Image.open(root / "masks" / f"{sample_id}.png"))
        pred = (image <= 100).astype(np.uint8)
        assert rows[sample_id]["pixel_error"] == pytest.approx(np.mean(pred != truth))
        expected = skimage_adapted_rand_error(
            ndimage.label(truth == 0)[0], ndimage.label(pred == 0)[0]
        )[0]
        assert rows[sample_id]["adapted_rand_error"] == pytest.approx(expected)
    assert report.num_images == len(ids) == 4
    assert report.confusion.sum() == 4 * 512 * 512
    assert (tmp_path / "evaluation" / "val" / "panels").is_dir()
