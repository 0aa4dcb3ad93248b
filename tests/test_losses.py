"""Losses against independent references: torch.nn.functional formulas and hand arithmetic."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unetlab.errors import UnetlabError
from unetlab.losses import build_loss, class_weights_from_frequencies, list_losses

IGNORE = 255


def random_batch(channels: int = 3, classes: int = 3, ignore_share: float = 0.2):
    """Logits 2 x C x 6 x 7, a target with ~20 % ignored pixels, and a per-pixel weight map."""
    logits = torch.randn(2, channels, 6, 7) * 2
    target = torch.randint(0, classes, (2, 6, 7))
    target[torch.rand(2, 6, 7) < ignore_share] = IGNORE
    weight = torch.rand(2, 6, 7) * 5 + 0.1
    return logits, target, weight


def kept_pixels(logits, target, weight):
    """The non-ignored pixels as a 1 x C x 1 x M batch (what the loss must see, nothing else)."""
    keep = target != IGNORE
    flat_logits = logits.permute(0, 2, 3, 1)[keep]  # M x C
    return flat_logits.T[None, :, None, :], target[keep][None, None, :], weight[keep][None, None]


# --- cross-entropy family vs torch.nn.functional ---------------------------------------------


def test_ce_equals_torch_cross_entropy_with_ignore_index():
    logits, target, _ = random_batch()
    expected = F.cross_entropy(logits, target, ignore_index=IGNORE)
    assert torch.allclose(build_loss("ce", 3)(logits, target), expected, atol=1e-6)


def test_ce_class_weights_equal_torch_weighted_mean():
    logits, target, _ = random_batch()
    class_weights = torch.tensor([0.2, 1.0, 3.5])
    expected = F.cross_entropy(logits, target, weight=class_weights, ignore_index=IGNORE)
    loss = build_loss("ce", 3, class_weights=class_weights.tolist())
    assert torch.allclose(loss(logits, target), expected, atol=1e-6)


def test_weighted_ce_is_the_weight_normalised_mean_of_per_pixel_ce():
    logits, target, weight = random_batch()
    per_pixel = F.cross_entropy(logits, target, ignore_index=IGNORE, reduction="none")
    keep = (target != IGNORE).float()
    expected = (per_pixel * weight * keep).sum() / (weight * keep).sum()
    loss = build_loss("weighted_ce", 3)
    assert torch.allclose(loss(logits, target, weight), expected, atol=1e-6)
    with pytest.raises(UnetlabError, match="weight map"):
        loss(logits, target)


@pytest.mark.parametrize("pos_weight", [None, 3.0])
def test_bce_equals_torch_bce_with_logits(pos_weight):
    logits, target, _ = random_batch(channels=1, classes=2)
    keep = target != IGNORE
    expected = F.binary_cross_entropy_with_logits(
        logits[:, 0][keep],
        target[keep].float(),
        pos_weight=None if pos_weight is None else torch.tensor(pos_weight),
    )
    options = {} if pos_weight is None else {"pos_weight": pos_weight}
    assert torch.allclose(build_loss("bce", 2, **options)(logits, target), expected, atol=1e-6)


def test_ce_on_a_one_channel_model_is_bce():
    logits, target, _ = random_batch(channels=1, classes=2)
    keep = target != IGNORE
    expected = F.binary_cross_entropy_with_logits(logits[:, 0][keep], target[keep].float())
    assert torch.allclose(build_loss("ce", 2)(logits, target), expected, atol=1e-6)


def test_focal_with_gamma_zero_is_ce():
    logits, target, _ = random_batch()
    expected = F.cross_entropy(logits, target, ignore_index=IGNORE)
    assert torch.allclose(build_loss("focal", 3, gamma=0.0)(logits, target), expected, atol=1e-6)


def test_multiclass_focal_matches_its_formula_with_alpha():
    logits, target, _ = random_batch()
    alpha = torch.tensor([0.25, 0.5, 1.0])
    keep = target != IGNORE
    p = F.softmax(logits, dim=1).permute(0, 2, 3, 1)[keep]  # M x C
    t = target[keep]
    p_t = p[torch.arange(len(t)), t]
    expected = (alpha[t] * (1 - p_t) ** 2 * -torch.log(p_t)).mean()
    loss = build_loss("focal", 3, alpha=alpha.tolist(), gamma=2.0)
    assert torch.allclose(loss(logits, target), expected, atol=1e-6)


def test_binary_focal_matches_the_sigmoid_focal_formula():
    """RetinaNet's sigmoid focal loss: alpha for the positives, 1 - alpha for the negatives."""
    logits, target, _ = random_batch(channels=1, classes=2)
    keep = target != IGNORE
    x, y = logits[:, 0][keep], target[keep].float()
    p = torch.sigmoid(x)
    p_t = p * y + (1 - p) * (1 - y)
    alpha_t = 0.25 * y + 0.75 * (1 - y)
    ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    expected = (alpha_t * (1 - p_t) ** 1.5 * ce).mean()
    loss = build_loss("focal", 2, alpha=0.25, gamma=1.5)
    assert torch.allclose(loss(logits, target), expected, atol=1e-6)


# --- Dice / F-beta: hand arithmetic -----------------------------------------------------------

# One image of 5 pixels, 2 classes. Class-1 probabilities p1 = [0.9, 0.6, 0.2, 0.1, 0.5],
# truth [1, 1, 0, 0, ignore]. Without the ignored pixel:
#   class 1: tp = 0.9 + 0.6 = 1.5, sum p = 1.8, sum y = 2, fp = 0.3, fn = 0.5
#            Dice = 2 * 1.5 / (1.8 + 2) = 3.0 / 3.8 = 0.7894737
#   class 0: p0 = [0.1, 0.4, 0.8, 0.9], tp = 0.8 + 0.9 = 1.7, sum p = 2.2, sum y = 2
#            Dice = 3.4 / 4.2 = 0.8095238
P1 = torch.tensor([0.9, 0.6, 0.2, 0.1, 0.5])
TRUTH = torch.tensor([[[1, 1, 0, 0, IGNORE]]])
SOFTMAX_LOGITS = torch.log(torch.stack([1 - P1, P1]))[None, :, None, :]  # 1 x 2 x 1 x 5
SIGMOID_LOGITS = torch.log(P1 / (1 - P1))[None, None, None, :]  # 1 x 1 x 1 x 5
DICE_1, DICE_0 = 3.0 / 3.8, 3.4 / 4.2


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        # mean of both classes
        ({"smooth": 0.0}, 1 - (DICE_0 + DICE_1) / 2),
        # smooth 1: class 1 (3 + 1) / (3.8 + 1), class 0 (3.4 + 1) / (4.2 + 1)
        ({"smooth": 1.0}, 1 - (4.0 / 4.8 + 4.4 / 5.2) / 2),
        # foreground only
        ({"smooth": 0.0, "include_background": False}, 1 - DICE_1),
        # F2 on class 1: 5 tp / (5 tp + 4 fn + fp) = 7.5 / (7.5 + 2.0 + 0.3)
        ({"smooth": 0.0, "beta": 2.0, "include_background": False}, 1 - 7.5 / 9.8),
    ],
)
@pytest.mark.parametrize("logits", [SOFTMAX_LOGITS, SIGMOID_LOGITS], ids=["softmax", "sigmoid"])
def test_dice_hand_computed(options, expected, logits):
    loss = build_loss("dice", 2, **options)(logits, TRUTH)
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_dice_class_weights_hand_computed():
    # weights [1, 3]: (1 * 0.8095238 + 3 * 0.7894737) / 4
    loss = build_loss("dice", 2, class_weights=[1.0, 3.0], smooth=0.0)(SOFTMAX_LOGITS, TRUTH)
    assert loss.item() == pytest.approx(1 - (DICE_0 + 3 * DICE_1) / 4, abs=1e-6)


def test_ce_dice_hand_computed():
    # CE over the 4 kept pixels: -(ln 0.9 + ln 0.6 + ln 0.8 + ln 0.9) / 4
    ce = -(math.log(0.9) + math.log(0.6) + math.log(0.8) + math.log(0.9)) / 4
    dice = 1 - (DICE_0 + DICE_1) / 2
    loss = build_loss("ce_dice", 2, ce_weight=0.5, dice_weight=2.0, smooth=0.0)
    assert loss(SOFTMAX_LOGITS, TRUTH).item() == pytest.approx(0.5 * ce + 2.0 * dice, abs=1e-6)


def test_perfect_prediction_has_zero_dice_loss():
    target = torch.tensor([[[0, 1, 2], [2, 1, 0]]])
    logits = F.one_hot(target, 3).permute(0, 3, 1, 2).float() * 50
    assert build_loss("dice", 3, smooth=0.0)(logits, target).item() == pytest.approx(0, abs=1e-6)


# --- properties every loss must have ----------------------------------------------------------

ALL_CASES = [
    ("ce", {}, 3),
    ("bce", {"pos_weight": 2.0}, 1),
    ("dice", {"beta": 1.5}, 3),
    ("dice", {"include_background": False}, 1),
    ("ce_dice", {"dice_weight": 0.5}, 3),
    ("focal", {"alpha": 0.3, "gamma": 2.0}, 3),
    ("focal", {"gamma": 1.0}, 1),
    ("focal", {"gamma": 0.5}, 3),
    ("weighted_ce", {}, 3),
]


@pytest.mark.parametrize(("name", "options", "channels"), ALL_CASES)
def test_ignored_pixels_change_nothing(name, options, channels):
    logits, target, weight = random_batch(channels, classes=max(channels, 2))
    loss = build_loss(name, max(channels, 2), **options)
    full = loss(logits, target, weight)
    # the same loss on the kept pixels only
    assert torch.allclose(full, loss(*kept_pixels(logits, target, weight)), atol=1e-5)
    # logits and weights at ignored pixels do not matter, and get no gradient
    ignored = (target == IGNORE).unsqueeze(1).expand_as(logits)
    changed = logits.masked_fill(ignored, 30.0).requires_grad_(True)
    value = loss(changed, target, weight.masked_fill(target == IGNORE, 1e3))
    value.backward()
    assert torch.allclose(value, full, atol=1e-5)
    assert changed.grad[ignored].abs().max() == 0


@pytest.mark.parametrize(("name", "options", "channels"), ALL_CASES)
def test_gradients_are_finite_for_extreme_logits_and_all_ignored_batches(name, options, channels):
    loss = build_loss(name, max(channels, 2), **options)
    _, target, weight = random_batch(channels, classes=max(channels, 2))
    logits = (torch.randn(2, channels, 6, 7).sign() * 200).requires_grad_(True)
    value = loss(logits, target, weight)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all()
    all_ignored = torch.full_like(target, IGNORE)
    empty = loss(logits, all_ignored, weight)
    assert torch.isfinite(empty)


# --- class weights from pixel counts ----------------------------------------------------------


def test_class_weights_from_frequencies_hand_computed():
    counts = [10, 30, 60, 0]  # 100 pixels, 4 classes, class 3 absent
    inverse = class_weights_from_frequencies(counts, "inverse")
    # total / (K * count): 100/40, 100/120, 100/240, absent -> 0
    assert torch.allclose(inverse, torch.tensor([2.5, 100 / 120, 100 / 240, 0.0]))
    # median of the present counts = 30: 30/10, 30/30, 30/60
    median = class_weights_from_frequencies(np.array(counts), "median")
    assert torch.allclose(median, torch.tensor([3.0, 1.0, 0.5, 0.0]))
    root = class_weights_from_frequencies(torch.tensor(counts), "sqrt_inverse")
    assert torch.allclose(root, inverse.sqrt())
    with pytest.raises(UnetlabError, match="median"):
        class_weights_from_frequencies(counts, "log")
    with pytest.raises(UnetlabError):
        class_weights_from_frequencies([0, 0], "inverse")


# --- user errors ------------------------------------------------------------------------------


def test_unknown_names_and_options_list_the_valid_ones():
    with pytest.raises(UnetlabError, match="ce_dice"):
        build_loss("dicee", 2)
    with pytest.raises(UnetlabError, match="include_background"):
        build_loss("dice", 2, gama=2)
    assert set(list_losses()) == {"ce", "bce", "dice", "ce_dice", "focal", "weighted_ce"}


def test_bad_inputs_raise_unetlab_errors():
    logits, target, _ = random_batch()
    ce = build_loss("ce", 3)
    with pytest.raises(UnetlabError, match=r"\[7\]"):
        ce(logits, target.masked_fill(target == 1, 7))
    with pytest.raises(UnetlabError, match="differ in size"):
        ce(logits[..., :5], target)
    with pytest.raises(UnetlabError, match="4 classes"):
        build_loss("ce", 4)(logits, target)
    with pytest.raises(UnetlabError, match="1 output channel"):
        build_loss("bce", 2)(logits[:, :2], target.clamp(max=1))
    with pytest.raises(UnetlabError, match="binary"):
        build_loss("bce", 3)
    with pytest.raises(UnetlabError, match="2 values"):
        build_loss("ce", 3, class_weights=[1.0, 2.0])
    with pytest.raises(UnetlabError, match="weight map"):
        build_loss("weighted_ce", 3)(logits, target, torch.ones(2, 6, 6))
