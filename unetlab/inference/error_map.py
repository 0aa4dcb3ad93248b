"""Where a prediction is wrong, drawn on the image: false positives and false negatives in two
colours. One owner for the ``unetlab evaluate`` worst-image panels and the ``unetlab serve``
inspect page. numpy only (and :func:`~unetlab.inference.overlay.to_display`), no torch.
"""

from __future__ import annotations

import numpy as np

from unetlab.errors import UnetlabError
from unetlab.inference.overlay import to_display

# error map colours (Okabe-Ito, told apart with colour-blindness too)
FALSE_POSITIVE = (213, 94, 0)  # vermillion: predicted where the truth has no such class
FALSE_NEGATIVE = (0, 114, 178)  # blue: missed
OTHER_ERROR = (240, 228, 66)  # yellow: wrong, but neither of the two above
IGNORED = (150, 150, 150)  # truth 255: not scored

ERROR_LEGEND = (
    ("false positive", FALSE_POSITIVE),
    ("false negative", FALSE_NEGATIVE),
    ("wrong class", OTHER_ERROR),
    ("ignored (255)", IGNORED),
)
"""Name and colour of each kind of pixel in an error map, for legends."""


def error_map(
    image: np.ndarray,
    prediction: np.ndarray,
    truth: np.ndarray,
    focus: int | None = None,
    ignore_index: int = 255,
) -> np.ndarray:
    """Where the prediction is wrong, on a faded copy of the image (``H x W x 3`` uint8).

    Positive classes are ``focus`` alone, or every class but 0 (the background) when ``focus``
    is None. A wrong pixel is a false positive (:data:`FALSE_POSITIVE`) when it is predicted
    positive and truly negative, a false negative (:data:`FALSE_NEGATIVE`) when truly positive
    and predicted negative, else :data:`OTHER_ERROR` (one positive class taken for another, or,
    with a focus, an error between two other classes). Ignored truth pixels are
    :data:`IGNORED`; correct pixels show the image, faded to light grey.
    """
    prediction, truth = np.asarray(prediction), np.asarray(truth)
    if prediction.shape != truth.shape or prediction.shape != image.shape[:2]:
        raise UnetlabError(
            f"image {image.shape[:2]}, prediction {prediction.shape} and truth {truth.shape} "
            "differ in size"
        )
    gray = to_display(image).astype(np.uint16).sum(axis=2) // 3
    faded = (170 + gray // 3).astype(np.uint8)  # light, low-contrast: errors stand out
    out = np.repeat(faded[:, :, None], 3, axis=2)
    ignored = truth == ignore_index
    wrong = (prediction != truth) & ~ignored
    if focus is None:
        predicted_positive, truly_positive = prediction != 0, truth != 0
    else:
        predicted_positive, truly_positive = prediction == focus, truth == focus
    false_positive = wrong & predicted_positive & ~truly_positive
    false_negative = wrong & truly_positive & ~predicted_positive
    out[wrong] = OTHER_ERROR
    out[false_positive] = FALSE_POSITIVE
    out[false_negative] = FALSE_NEGATIVE
    out[ignored] = IGNORED
    return out


def error_counts(
    prediction: np.ndarray, truth: np.ndarray, focus: int | None = None, ignore_index: int = 255
) -> dict[str, int]:
    """Pixels of each kind in :func:`error_map` (for its legend)."""
    ignored = truth == ignore_index
    wrong = (prediction != truth) & ~ignored
    positive = (lambda a: a != 0) if focus is None else (lambda a: a == focus)
    fp = int((wrong & positive(prediction) & ~positive(truth)).sum())
    fn = int((wrong & positive(truth) & ~positive(prediction)).sum())
    return {
        "false_positive": fp,
        "false_negative": fn,
        "other": int(wrong.sum()) - fp - fn,
        "ignored": int(ignored.sum()),
    }
