"""The short way for clean drawings: a digit drawn on a background of one exact gray level.

A drawing from a page's pad, a paint program or a scanner's "line art" mode has a
background of a single level and ink on one side of it only (anti-aliased strokes included).
For such a picture the steps of :mod:`.analysis` are known in advance: the paper is that
level everywhere (no fit, no closing), there is no noise, and the polarity is the side the
ink lies on. :func:`find_drawn_digit` recognises such a picture exactly (every pixel at or on
one side of the border's most common level, at least half of them at it) and finds the
digit at the resolution it needs:

1. the ink's extent on a copy reduced by whole blocks to about :data:`BLOCK_SIDE` pixels,
   each block holding its strongest ink (so a one-pixel line is not lost), where the digit
   is chosen as in :func:`~.analysis.find_digit` (the largest region and its close
   neighbours; specks further away are dropped);
2. the digit's box cut from the picture, reduced by a whole factor to at most
   :data:`CUT_SIDE` pixels on its longer side (each pixel the mean of a block), and its
   ink stretched so that the strokes' cores reach 255, as :func:`~.analysis.find_digit`
   does. Step 6 of :mod:`.pipeline` then judges the stroke width as at the picture's
   resolution (``pixel``, the factor).

Any other picture (a photo, a scan with paper texture, a JPEG's ringing) returns None and
goes through :func:`~.analysis.find_digit`.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .analysis import MIN_DIGIT, Found, _select_digit
from .decode import to_gray

BLOCK_SIDE = 64  # the digit is chosen on a copy reduced by whole blocks to about this many pixels
_EIGHT = np.ones((3, 3), dtype=bool)  # neighbours, as _select_digit's
CUT_SIDE = 80  # the digit is cut from the picture at up to this many pixels on its longer side (as a photo's)


def gray_levels(image: Image.Image) -> np.ndarray | None:
    """The gray levels of :func:`~.decode.to_gray` as uint8 (h, w) when they are whole numbers
    (8-bit pictures; deeper ones holding 8-bit levels), else None."""
    mode = image.mode
    if mode in ("L", "RGB", "LA", "RGBA") and "transparency" not in image.info:
        alpha = (
            image.tobytes("raw", "A") if mode == "RGBA" else image.getchannel("A").tobytes() if mode == "LA" else b""
        )
        if int(np.frombuffer(alpha, np.uint8).min(initial=255)) < 255:
            return np.asarray(to_gray(image), dtype=np.uint8)  # composited on white: whole numbers
        # (opaque: the alpha is ignored, as compositing on white would leave every pixel as it is)
        return np.asarray(image if image.mode == "L" else image.convert("L"))
    gray = to_gray(image)
    whole = np.round(gray)
    if gray.size == 0 or float(np.abs(gray - whole).max()) > 1e-3:
        return None
    return whole.astype(np.uint8)


def _block_extreme(a: np.ndarray, f: int, dark: bool, fill: int) -> np.ndarray:
    """The darkest (``dark``) or lightest pixel of each ``f`` x ``f`` block of ``a`` (padded with ``fill``)."""
    h, w = a.shape
    ph, pw = -h % f, -w % f
    if ph or pw:
        a = np.pad(a, ((0, ph), (0, pw)), constant_values=fill)
    pick = np.minimum if dark else np.maximum
    rows = a[0::f]
    for i in range(1, f):
        rows = pick(rows, a[i::f])
    out = rows[:, 0::f]
    for j in range(1, f):
        out = pick(out, rows[:, j::f])
    return out


def _ink(a: np.ndarray, background: int, dark: bool) -> np.ndarray:
    """The ink against a constant paper, float32, as :func:`~.analysis.to_ink`."""
    if dark:
        return (background - a.astype(np.float32)) * np.float32(255 / max(background, 1))
    return a.astype(np.float32) - np.float32(background)


def clean_background(a: np.ndarray) -> int | None:
    """The background level of a clean drawing ``a`` (uint8 (h, w)): the border's most common
    level, when at least half the pixels are at it and every other one on one side of it; else
    None (see the module's docstring)."""
    found = _clean_levels(a)
    return None if found is None else found[0]


def _clean_levels(a: np.ndarray) -> tuple[int, int, int] | None:
    """:func:`clean_background`, and the picture's lowest and highest levels."""
    if min(a.shape) < 2:
        return None
    ring = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    background = int(np.bincount(ring, minlength=256).argmax())
    low, high = int(a.min()), int(a.max())
    if (low != background and high != background) or 2 * np.count_nonzero(a == background) < a.size:
        return None
    return background, low, high


def find_drawn_digit(a: np.ndarray) -> tuple[Found, int] | None:
    """The digit on a clean drawing ``a`` (uint8 (h, w), from :func:`gray_levels`), as
    :func:`~.analysis.find_digit` gives it (only ``digit`` and ``dark`` are set), and the side
    of the blocks of ``a`` that its pixels are; None when ``a`` is not a clean drawing (see the
    module's docstring)."""
    from scipy import ndimage

    found = _clean_levels(a)
    if found is None:
        return None
    background, low, high = found
    h, w = a.shape
    dark = high == background and low < background
    if high - low < 8:  # as find_digit: no contrast, nothing drawn
        return Found(None, False), 1

    # 1. The digit's extent on blocks holding their strongest ink.
    f = max(1, max(h, w) // BLOCK_SIDE)
    blocks = _ink(_block_extreme(a, f, dark, background), background, dark)
    peak = float(blocks.max())
    if peak < 8.0:
        return Found(None, dark), 1
    chosen = blocks > 0.25 * peak
    if ndimage.label(chosen, structure=_EIGHT)[1] > 1:  # (one region, the common case: the digit)
        chosen = _select_digit(blocks, 0.25 * peak)
    near = chosen.copy()  # and one block around (the strokes' soft edges)
    near[1:] |= chosen[:-1]
    near[:-1] |= chosen[1:]
    near[:, 1:] |= near[:, :-1].copy()
    near[:, :-1] |= near[:, 1:].copy()
    rows, cols = np.nonzero(near.any(axis=1))[0], np.nonzero(near.any(axis=0))[0]
    r0, r1 = int(rows[0]) * f, min(h, (int(rows[-1]) + 1) * f)
    c0, c1 = int(cols[0]) * f, min(w, (int(cols[-1]) + 1) * f)
    region = a[r0:r1, c0:c1]
    others = (blocks > 0) & ~near  # ink in the box that is not the digit's: specks, left out
    if others[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].any():
        keep = np.repeat(np.repeat(near, f, axis=0), f, axis=1)[r0:r1, c0:c1]
        region = np.where(keep, region, np.uint8(background))

    # 2. The box reduced by whole pixels to at most CUT_SIDE on its longer side, its ink stretched.
    k = -(-max(r1 - r0, c1 - c0) // CUT_SIDE)
    cut = region if k == 1 else np.asarray(Image.fromarray(region).reduce(k))
    ink = _ink(cut, background, dark)
    strong = ink[ink > 0.25 * float(ink.max())]
    at = int(0.9 * (strong.size - 1))  # the strokes' cores: the 90th percentile of the strong ink
    level = float(np.partition(strong, at)[at])
    digit = np.clip(ink * np.float32(255 / max(level, 1e-6)), 0, 255)
    support = digit > 0.1 * 255
    rows, cols = np.nonzero(support.any(axis=1))[0], np.nonzero(support.any(axis=0))[0]
    if len(rows) == 0 or (max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1) * k < max(4, MIN_DIGIT * max(h, w)):
        return Found(None, dark), 1  # nothing, or a speck: not a digit
    return Found(digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], dark), k
