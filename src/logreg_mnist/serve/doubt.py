"""When the page should say that what it reads may not be a digit: blank, too small, unsure.

The model always answers one of its classes, even for a scribble; the page shows a cue
instead of a confident-looking label when:

- **blank**: the pipeline found no ink (:attr:`~logreg_mnist.images.Prepared.blank`);
- **small**: the drawing's ink spans fewer than :data:`MIN_INK_BOX` pixels on its longer
  side, measured on the picture scaled to 28 pixels across (MNIST's digits span 20; the
  pipeline scales any digit up to that, so a dot or a tiny scribble is blown up into a
  smudge);
- **unsure**: the most probable class has less than :data:`MIN_CONFIDENCE` of the
  probability (less than an even chance against all the others together).

The first that applies is reported, in that order.
"""

from __future__ import annotations

import math

import numpy as np

from ..data.pixels import SIDE

MIN_CONFIDENCE = 0.5  # below this top probability: "unsure"
MIN_INK_BOX = 6  # of 28 pixels: a smaller drawing is "small" (MNIST's digits span 20)
INK_CONTRAST = 64  # a pixel this far (of 255) from the picture's background level is ink


def thresholds() -> dict[str, float | int]:
    """The thresholds as ``GET /api/run`` reports them."""
    return {"min_confidence": MIN_CONFIDENCE, "min_ink_box": MIN_INK_BOX}


def _median(a: np.ndarray) -> float:
    """``np.median(a)``, by one partition (without np.median's checks, a third of its time on a drawing's sample)."""
    values = a.ravel()
    n = values.size
    k = n // 2
    if n % 2:
        return float(np.partition(values, k)[k])
    return float(np.mean(np.partition(values, [k - 1, k])[k - 1 : k + 1]))  # (as np.median: in a's precision)


def ink_box(gray: np.ndarray) -> tuple[float, float] | None:
    """The (height, width) of the ink in ``gray`` (float or uint8 (h, w), 0-255), in pixels of the picture
    scaled to 28 across its longer side; None when nothing differs from the background.

    The background is the picture's median level (a drawing is mostly background; measured on
    every 4th row and column); ink is any pixel at least :data:`INK_CONTRAST` away from it, on
    either side.
    """
    if gray.size == 0:
        return None
    level = _median(gray[::4, ::4])
    if gray.dtype == np.uint8:  # the same test on whole levels, each side only where a level can reach it
        low, high = math.floor(level - INK_CONTRAST), math.ceil(level + INK_CONTRAST)
        ink = gray <= low if low >= 0 else np.zeros(gray.shape, dtype=bool)
        if high <= 255:
            ink |= gray >= high
    else:
        ink = np.abs(gray - level) >= INK_CONTRAST
    rows, cols = np.nonzero(ink.any(axis=1))[0], np.nonzero(ink.any(axis=0))[0]
    if len(rows) == 0:
        return None
    scale = SIDE / max(gray.shape)
    return (rows[-1] - rows[0] + 1) * scale, (cols[-1] - cols[0] + 1) * scale


def doubt(
    *, blank: bool, box: tuple[float, float] | None, probabilities: np.ndarray, names: list[str]
) -> dict[str, str] | None:
    """The cue for a prediction: None, or ``{"kind": "blank" | "small" | "unsure", "message"}``.

    Args:
        blank: the pipeline found no digit.
        box: :func:`ink_box` of the picture (None: not measured, or no ink).
        probabilities: the model's probabilities for the prepared input.
        names: the class names.
    """
    if blank:
        return {"kind": "blank", "message": "No digit found: the picture looks empty. Draw a digit."}
    if box is not None and max(box) < MIN_INK_BOX:
        tall = box[0] >= box[1]
        size = max(1, round(max(box)))
        return {
            "kind": "small",
            "message": f"Draw larger: the digit is only {size} pixel{'s' if size != 1 else ''} "
            f"{'tall' if tall else 'wide'} out of 28 (MNIST's digits are about 20).",
        }
    best = int(np.argmax(probabilities))
    top = float(probabilities[best])
    if top < MIN_CONFIDENCE:
        return {
            "kind": "unsure",
            "message": f"Not sure: the best guess, {names[best]}, has only {top:.0%} of the probability. "
            "Is it a digit?",
        }
    return None
