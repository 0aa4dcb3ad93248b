"""Plots: curves from partial CSVs, the confusion-matrix figure, and the exact panel layout."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import unetlab.engine.plots as plots_module
from unetlab.engine.plots import (
    PANEL_MARGIN,
    normalize_rows,
    panel_origin,
    plot_confusion,
    plot_curves,
    read_metrics_csv,
    save_panel,
)

VOC_IGNORE_COLOR = (224, 224, 192)  # index 255 of the PASCAL VOC colour map
HEADER = "epoch,lr,train_loss,val_loss,miou,pixel_acc\n"


def _write(path, text):
    path.write_text(text)
    return path


@pytest.fixture
def drawn(monkeypatch) -> list:
    """The matplotlib axes each plot draws on, kept for inspection after the figure closes."""
    axes = []
    original = plots_module.plt.subplots

    def subplots(*args, **kwargs):
        fig, ax = original(*args, **kwargs)
        axes.append(ax)
        return fig, ax

    monkeypatch.setattr(plots_module.plt, "subplots", subplots)
    return axes


def _is_png(path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_curves_with_validation_every_other_epoch(tmp_path):
    csv = _write(
        tmp_path / "metrics.csv",
        HEADER
        + "1,0.001,0.9,,,\n"
        + "2,0.0005,0.7,0.8,0.41,0.80\n"
        + "3,0.00025,0.6,,,\n"
        + "4,0.000125,0.5,0.55,0.62,0.91\n",
    )
    columns = read_metrics_csv(csv)
    assert columns["train_loss"] == {1: 0.9, 2: 0.7, 3: 0.6, 4: 0.5}
    assert columns["val_loss"] == {2: 0.8, 4: 0.55}
    assert columns["miou"] == {2: 0.41, 4: 0.62}

    written = plot_curves(csv, tmp_path / "plots")
    assert [p.name for p in written] == ["loss.png", "miou.png", "lr.png"]
    for path in written:
        width, height = _is_png(path)
        assert width > 100 and height > 100


def test_curves_draw_the_csv_values(tmp_path, drawn):
    csv = _write(
        tmp_path / "metrics.csv",
        HEADER + "1,0.001,0.9,,,\n2,0.0005,0.7,0.8,0.41,0.80\n3,0.00025,0.6,,,\n",
    )
    plot_curves(csv, tmp_path / "plots")
    loss, miou, lr = drawn

    def lines(ax):
        return {line.get_label(): line.get_xydata().tolist() for line in ax.get_lines()}

    assert lines(loss) == {"train_loss": [[1, 0.9], [2, 0.7], [3, 0.6]], "val_loss": [[2, 0.8]]}
    assert lines(miou) == {"miou": [[2, 0.41]]}
    assert lines(lr) == {"lr": [[1, 0.001], [2, 0.0005], [3, 0.00025]]}
    assert lr.get_yscale() == "log" and loss.get_yscale() == "linear"
    assert (loss.get_xlabel(), loss.get_ylabel()) == ("epoch", "loss")


def test_curves_of_a_run_stopped_after_one_epoch_without_validation(tmp_path):
    csv = _write(tmp_path / "metrics.csv", HEADER + "1,0.01,1.25,,,\n")
    written = plot_curves(csv, tmp_path / "plots")
    assert [p.name for p in written] == ["loss.png", "lr.png"]  # no mIoU values: no miou.png


@pytest.mark.parametrize("text", [None, "", HEADER, HEADER + "x,1,nan,,,\n"])
def test_curves_of_missing_or_empty_csv_draw_nothing(tmp_path, text):
    csv = tmp_path / "metrics.csv"
    if text is not None:
        csv.write_text(text)
    assert plot_curves(csv, tmp_path / "plots") == []
    assert not (tmp_path / "plots").exists()


def test_resumed_run_keeps_the_last_row_of_a_repeated_epoch(tmp_path):
    csv = _write(tmp_path / "m.csv", HEADER + "1,0.1,2.0,,,\n1,0.1,1.5,,,\n2,0.1,1.0,,,\n")
    assert read_metrics_csv(csv)["train_loss"] == {1: 1.5, 2: 1.0}


def test_row_normalisation_by_hand():
    matrix = np.array([[3, 1, 0], [0, 0, 0], [2, 2, 4]])
    expected = np.array([[0.75, 0.25, 0.0], [0.0, 0.0, 0.0], [0.25, 0.25, 0.5]])
    np.testing.assert_allclose(normalize_rows(matrix), expected)


@pytest.mark.parametrize(
    ("normalize", "cells"),
    [(True, ["94.3", "5.7", "14.9", "85.1"]), (False, ["50", "3", "7", "40"])],
)
def test_confusion_png_shows_the_matrix(tmp_path, drawn, normalize, cells):
    """Rows are the truth: 50 of 53 cells (94.3 %) and 40 of 47 membrane pixels (85.1 %)."""
    matrix = np.array([[50, 3], [7, 40]])
    path = plot_confusion(matrix, ["cell", "membrane"], tmp_path / "cm" / "c.png", normalize)
    width, height = _is_png(path)
    assert width >= 300 and height >= 300
    (ax,) = drawn
    texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text()
             for t in ax.texts}  # (row, column) -> annotation
    assert [texts[(i, j)] for i in (0, 1) for j in (0, 1)] == cells
    shown = ax.get_images()[0].get_array()
    expected = normalize_rows(matrix) if normalize else matrix
    np.testing.assert_allclose(np.asarray(shown), expected)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["cell", "membrane"]
    assert ax.get_ylabel() == "true class" and ax.get_xlabel() == "predicted class"


def test_panel_layout_and_colours(tmp_path):
    h, w = 40, 96
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (h, w), dtype=np.uint8)  # grayscale
    truth = rng.integers(0, 3, (h, w)).astype(np.uint8)
    truth[:5, :5] = 255  # ignored pixels
    prediction = rng.integers(0, 3, (h, w)).astype(np.uint8)
    palette = [(0, 0, 0), (200, 30, 30), (30, 200, 30)]

    path = save_panel(image, truth, prediction, palette, tmp_path / "p.png", ["bg", "a", "b"])
    with Image.open(path) as opened:
        panel = np.asarray(opened.convert("RGB"))
    assert panel.shape[1] == 3 * w + 4 * PANEL_MARGIN
    x0, y0 = panel_origin()
    assert panel.shape[0] > y0 + h  # titles above, legend below

    def picture(i):
        x = x0 + i * (w + PANEL_MARGIN)
        return panel[y0 : y0 + h, x : x + w]

    np.testing.assert_array_equal(picture(0), np.repeat(image[:, :, None], 3, axis=2))
    lut = np.array(palette, dtype=np.uint8)
    expected_truth = lut[np.where(truth == 255, 0, truth)]
    expected_truth[truth == 255] = VOC_IGNORE_COLOR
    np.testing.assert_array_equal(picture(1), expected_truth)
    np.testing.assert_array_equal(picture(2), lut[prediction])
    legend = panel[y0 + h :]
    for color in [*palette[1:], VOC_IGNORE_COLOR]:  # swatches: each class, and 'ignored'
        assert (legend == np.array(color, np.uint8)).all(axis=2).any()


def test_panel_of_a_tiny_image_widens_for_the_legend(tmp_path):
    image = np.zeros((8, 8, 3), dtype=np.float32)  # float RGB in [0, 1]
    image[..., 0] = 1.0
    labels = np.ones((8, 8), dtype=np.uint8)
    names = ["background", "a rather long class name"]
    path = save_panel(image, labels, labels, [(0, 0, 0), (0, 0, 255)], tmp_path / "t.png", names)
    with Image.open(path) as opened:
        panel = np.asarray(opened.convert("RGB"))
    assert panel.shape[1] > 3 * 8 + 4 * PANEL_MARGIN
    x0, y0 = panel_origin()
    np.testing.assert_array_equal(panel[y0 : y0 + 8, x0 : x0 + 8], [[[255, 0, 0]] * 8] * 8)


def test_panel_refuses_parts_of_different_sizes(tmp_path):
    with pytest.raises(ValueError, match="differ in size"):
        save_panel(
            np.zeros((8, 8), np.uint8),
            np.zeros((8, 8), np.uint8),
            np.zeros((8, 9), np.uint8),
            [(0, 0, 0), (1, 1, 1)],
            tmp_path / "x.png",
        )
