"""Metrics against brute force, scikit-image and hypothesis properties."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage
from skimage.metrics import adapted_rand_error as skimage_adapted_rand_error

from unetlab.errors import UnetlabError
from unetlab.metrics import (
    ConfusionMatrix,
    adapted_rand_error,
    membrane_rand_error,
    membrane_to_regions,
    pixel_error,
)

IGNORE = 255
K = 6


def random_maps(rng, shape=(2, 30, 40)):
    """Truth with classes 0..3 and ~15 % ignored pixels, prediction with classes 0..4:
    class 4 is predicted but never true, class 5 is absent from both."""
    truth = rng.integers(0, 4, shape)
    truth[rng.random(shape) < 0.15] = IGNORE
    pred = np.where(rng.random(shape) < 0.6, truth, rng.integers(0, 5, shape))
    pred[truth == IGNORE] = rng.integers(0, 5, int((truth == IGNORE).sum()))
    return pred, truth


def brute_force_scores(pred, truth, num_classes):
    """Per-class counts by a plain loop over pixels, then the textbook ratios.

    A ratio with a zero denominator is undefined (NaN); means skip undefined values.
    """
    tp = [0] * num_classes
    fp = [0] * num_classes
    fn = [0] * num_classes
    for p, t in zip(pred.ravel().tolist(), truth.ravel().tolist(), strict=True):
        if t == IGNORE:
            continue
        if p == t:
            tp[t] += 1
        else:
            fp[p] += 1
            fn[t] += 1

    def div(a, b):
        return a / b if b else math.nan

    iou = [div(tp[c], tp[c] + fp[c] + fn[c]) for c in range(num_classes)]
    recall = [div(tp[c], tp[c] + fn[c]) for c in range(num_classes)]
    precision = [div(tp[c], tp[c] + fp[c]) for c in range(num_classes)]
    dice = [div(2 * tp[c], 2 * tp[c] + fp[c] + fn[c]) for c in range(num_classes)]
    total = sum(tp) + sum(fn)
    fwiou = sum((tp[c] + fn[c]) / total * iou[c] for c in range(num_classes) if tp[c] + fn[c])
    return {
        "iou": iou,
        "recall": recall,
        "precision": precision,
        "dice": dice,
        "miou": float(np.nanmean(iou)),
        "mpa": float(np.nanmean(recall)),
        "mean_precision": float(np.nanmean(precision)),
        "mean_dice": float(np.nanmean(dice)),
        "pixel_accuracy": sum(tp) / total,
        "fwiou": fwiou,
    }


def assert_same_scores(scores, expected):
    assert scores.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_allclose(scores[name], value, rtol=1e-12, err_msg=name)


def test_scores_match_brute_force_with_ignore_and_absent_classes():
    pred, truth = random_maps(np.random.default_rng(1))
    expected = brute_force_scores(pred, truth, K)
    scores = ConfusionMatrix(K).update(pred, truth).compute()
    for name, value in expected.items():
        np.testing.assert_allclose(scores[name], value, rtol=1e-12, err_msg=name)
    # class 4: predicted, never true -> IoU 0, recall undefined; class 5: all undefined
    assert scores["iou"][4] == 0 and math.isnan(scores["recall"][4])
    assert all(math.isnan(scores[name][5]) for name in ("iou", "recall", "precision", "dice"))


def test_matrix_rows_are_truth_and_columns_prediction():
    truth = np.array([[0, 0, 1, IGNORE]])
    pred = np.array([[0, 1, 1, 1]])
    # (truth 0, pred 0) once, (0, 1) once, (1, 1) once; the ignored pixel is skipped
    np.testing.assert_array_equal(ConfusionMatrix(2).update(pred, truth).matrix, [[1, 1], [0, 1]])


def test_torch_and_numpy_inputs_agree_and_batches_accumulate():
    pred, truth = random_maps(np.random.default_rng(2))
    whole = ConfusionMatrix(K).update(pred, truth)
    batched = ConfusionMatrix(K)
    for p, t in zip(pred, truth, strict=True):
        batched.update(torch.from_numpy(p), torch.from_numpy(t.astype(np.uint8)))
    np.testing.assert_array_equal(batched.matrix, whole.matrix)


def test_merge_of_two_halves_equals_one_update():
    pred, truth = random_maps(np.random.default_rng(3))
    whole = ConfusionMatrix(K).update(pred, truth)
    top = ConfusionMatrix(K).update(pred[:, :15], truth[:, :15])
    bottom = ConfusionMatrix(K).update(pred[:, 15:], truth[:, 15:])
    np.testing.assert_array_equal(top.merge(bottom).matrix, whole.matrix)
    assert_same_scores(top.compute(), whole.compute())
    with pytest.raises(UnetlabError, match="merge"):
        top.merge(ConfusionMatrix(K + 1))


def test_state_round_trips_through_json_and_reset_empties():
    pred, truth = random_maps(np.random.default_rng(4))
    matrix = ConfusionMatrix(K).update(pred, truth)
    restored = ConfusionMatrix.from_dict(json.loads(json.dumps(matrix.to_dict())))
    np.testing.assert_array_equal(restored.matrix, matrix.matrix)
    matrix.reset()
    assert matrix.total == 0 and math.isnan(matrix.compute()["miou"])
    with pytest.raises(UnetlabError):
        ConfusionMatrix.from_dict({"num_classes": 2, "matrix": [[1, 2, 3]]})


def test_format_table_names_each_class():
    truth = np.array([[0, 0, 1, 1]])
    pred = np.array([[0, 1, 1, 1]])
    # membrane: IoU 2/3, recall 1, precision 2/3, Dice 0.8; cell: IoU 1/2, recall 1/2
    table = ConfusionMatrix(3).update(pred, truth).format_table(["cell", "membrane", "other"])
    rows = {line.split()[0]: line.split()[1:] for line in table.splitlines()}
    assert rows["membrane"] == ["66.67", "100.00", "66.67", "80.00", "2"]
    assert rows["cell"][:2] == ["50.00", "50.00"]
    assert rows["other"] == ["-", "-", "-", "-", "0"]
    with pytest.raises(UnetlabError, match="class names"):
        ConfusionMatrix(3).format_table(["a", "b"])


def test_bad_labels_are_refused():
    matrix = ConfusionMatrix(3)
    with pytest.raises(UnetlabError, match=r"\[3\]"):
        matrix.update(np.array([0, 3]), np.array([0, 1]))
    with pytest.raises(UnetlabError, match="differ in shape"):
        matrix.update(np.zeros((2, 2), int), np.zeros((2, 3), int))
    with pytest.raises(UnetlabError, match="labels_from_logits"):
        matrix.update(torch.zeros(2, 2), torch.zeros(2, 2, dtype=torch.long))
    assert matrix.total == 0


def _all_reduce_worker(rank: int, init_file: str, pred, truth, out_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    matrix = ConfusionMatrix(K).update(pred[rank], truth[rank]).all_reduce()
    if rank == 0:
        np.save(out_file, matrix.matrix)
    dist.destroy_process_group()


def test_all_reduce_sums_over_two_gloo_processes(tmp_path):
    pred, truth = random_maps(np.random.default_rng(5))
    out = tmp_path / "reduced.npy"
    mp.spawn(
        _all_reduce_worker,
        args=(str(tmp_path / "init"), pred, truth, str(out)),
        nprocs=2,
        join=True,
    )
    np.testing.assert_array_equal(np.load(out), ConfusionMatrix(K).update(pred, truth).matrix)
    # outside a distributed run it changes nothing
    single = ConfusionMatrix(K).update(pred, truth)
    np.testing.assert_array_equal(single.all_reduce().matrix, single.matrix)


# --- hypothesis properties ----------------------------------------------------------------

label_maps = arrays(
    np.int64,
    st.tuples(st.integers(1, 12), st.integers(1, 12)),
    elements=st.sampled_from([0, 1, 2, 3, IGNORE]),
)


@settings(max_examples=60, deadline=None)
@given(label_maps)
def test_prediction_equal_to_truth_scores_one_on_present_classes(truth):
    scores = ConfusionMatrix(5).update(truth, truth).compute()
    present = set(np.unique(truth[truth != IGNORE]).tolist())
    for c in range(5):
        for name in ("iou", "recall", "precision", "dice"):
            if c in present:
                assert scores[name][c] == 1.0
            else:
                assert math.isnan(scores[name][c])
    if present:
        assert scores["miou"] == 1.0 and scores["pixel_accuracy"] == 1.0


@settings(max_examples=60, deadline=None)
@given(label_maps, st.randoms(use_true_random=False))
def test_total_is_the_non_ignored_count_and_pixel_order_does_not_matter(truth, random):
    pred = np.array([random.randrange(4) for _ in range(truth.size)]).reshape(truth.shape)
    matrix = ConfusionMatrix(4).update(pred, truth)
    assert matrix.total == int(np.sum(truth != IGNORE)) == matrix.matrix.sum()
    order = list(range(truth.size))
    random.shuffle(order)
    shuffled = ConfusionMatrix(4).update(pred.ravel()[order], truth.ravel()[order])
    np.testing.assert_array_equal(shuffled.matrix, matrix.matrix)
    assert_same_scores(shuffled.compute(), matrix.compute())


# --- EM scores ------------------------------------------------------------------------------


def test_pixel_error_hand_computed():
    truth = np.array([[0, 1, 1, 0], [1, 1, 0, IGNORE]])
    pred = np.array([[0, 1, 0, 0], [1, 0, 0, 1]])
    assert pixel_error(pred, truth) == pytest.approx(2 / 7)  # 2 of the 7 kept pixels differ
    assert pixel_error(torch.from_numpy(truth), torch.from_numpy(truth)) == 0.0


def test_adapted_rand_hand_computed_under_segmentation():
    # truth regions of sizes 1, 2, 1; one predicted region of 4 pixels:
    # sum n_ij^2 - n = (1 + 4 + 1) - 4 = 2, truth pairs (1 + 4 + 1) - 4 = 2,
    # predicted pairs 16 - 4 = 12 -> precision 2/12, recall 2/2, error 1 - 4/14
    error, precision, recall = adapted_rand_error(np.ones((2, 2), int), np.array([[1, 2], [3, 2]]))
    assert (precision, recall) == (pytest.approx(1 / 6), pytest.approx(1.0))
    assert error == pytest.approx(1 - 4 / 14)


def blobs(rng, shape=(40, 48), threshold=0.55):
    """A random instance labeling: connected components of smoothed noise (0 = background)."""
    field = ndimage.gaussian_filter(rng.random(shape), 2.0)
    return ndimage.label(field > np.quantile(field, threshold))[0]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_adapted_rand_matches_skimage(seed):
    rng = np.random.default_rng(seed)
    truth = blobs(rng)
    candidates = {
        "other blobs": blobs(rng),
        "shifted truth": np.roll(truth, 2, axis=1),
        "merged": (truth > 0).astype(int),
        "split": truth * 2 + (np.indices(truth.shape)[1] > 24),
    }
    for name, pred in candidates.items():
        error, precision, recall = adapted_rand_error(pred, truth)
        ref_error, ref_first, ref_second = skimage_adapted_rand_error(truth, pred)
        assert error == pytest.approx(ref_error, abs=1e-12), name
        # scikit-image returns these two in the opposite order (scikit-image issue #6485)
        assert (precision, recall) == (pytest.approx(ref_second), pytest.approx(ref_first)), name


def test_membrane_to_regions_and_rand_on_membrane_masks():
    # a membrane cross (class 1) cuts a 5 x 5 image into four cells
    mask = np.zeros((5, 5), dtype=np.uint8)
    mask[2, :] = 1
    mask[:, 2] = 1
    regions = membrane_to_regions(mask)
    assert regions.max() == 4 and np.all(regions[mask == 1] == 0)
    assert sorted(np.bincount(regions.ravel())[1:].tolist()) == [4, 4, 4, 4]
    # predicting the truth gives no error; dropping the vertical membrane merges cells
    assert membrane_rand_error(mask, mask)[0] == pytest.approx(0.0)
    merged = mask.copy()
    merged[:, 2] = 0
    merged[2, :] = 1
    expected = skimage_adapted_rand_error(membrane_to_regions(mask), membrane_to_regions(merged))
    assert membrane_rand_error(merged, mask)[0] == pytest.approx(expected[0])
    assert membrane_rand_error(merged, mask)[0] > 0
