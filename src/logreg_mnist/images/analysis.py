"""Paper, ink and the digit found on a gray picture (steps 2 to 4 of :mod:`.pipeline`).

:func:`find_digit` takes float32 gray levels (h, w) in [0, 255] and returns what it found
(:class:`Found`): the digit cropped and stretched, its polarity, and where it lies, so that
:mod:`.pipeline` can cut it from a finer copy of the picture. Every filter here works at the
resolution it is handed; the pipeline hands it small images as they are and a reduced copy
of large ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

MIN_DIGIT = 0.025  # a digit spans at least this fraction of the picture's longer side; less is a speck


@dataclass(frozen=True)
class Found:
    """What :func:`find_digit` found.

    Attributes:
        digit: float32 (h, w) in [0, 255], the digit cropped, light on dark; None when the
            picture holds no digit (blank, or only specks).
        dark: the ink is darker than the paper (False when nothing was found).
        box: the digit's rows and columns ``(r0, r1, c0, c1)``, ``[r0, r1) x [c0, c1)``.
        near: bool (H, W), the pixels the digit may take.
        paper: float32 (H, W), the local paper's brightness (smoothed).
    """

    digit: np.ndarray | None
    dark: bool
    box: tuple[int, int, int, int] = (0, 0, 0, 0)
    near: np.ndarray | None = None
    paper: np.ndarray | None = None


def resize(a: np.ndarray, size: tuple[int, int], resample=Image.Resampling.LANCZOS) -> np.ndarray:
    """Resize float32 (h, w) to (height, width) = ``size`` with Pillow (anti-aliased when shrinking)."""
    h, w = size
    return np.asarray(
        Image.fromarray(np.ascontiguousarray(a, dtype=np.float32), mode="F").resize((w, h), resample), dtype=np.float32
    )


def noise_sigma(a: np.ndarray) -> float:
    """A robust estimate of the spread of ``a``: 1.4826 x the median absolute deviation."""
    a = a.ravel()[:: max(1, a.size // 65536)]  # a sample is enough
    return float(1.4826 * np.median(np.abs(a - np.median(a))))


def _paper_fit(gray: np.ndarray) -> np.ndarray:
    """The paper's brightness under each pixel as a smooth surface (a cubic in x and y).

    Fitted to the medians of blocks of the image (at most 48 per side) by least squares,
    five times, each time leaving out the blocks that stand out from the fit (ink, on
    either side), so gradients and vignetting are followed up to the image's edges.
    """
    h, w = gray.shape
    step = max(1, -(-max(h, w) // 48))
    gh, gw = h // step, w // step
    blocks = gray[: gh * step, : gw * step].reshape(gh, step, gw, step)
    coarse = np.median(blocks.transpose(0, 2, 1, 3).reshape(gh, gw, -1), axis=2).ravel()
    centres_y = (np.arange(gh) + 0.5) * step - 0.5
    centres_x = (np.arange(gw) + 0.5) * step - 0.5

    def terms(y: np.ndarray, x: np.ndarray, degree: int = 3) -> list[np.ndarray]:
        y, x = 2 * y / max(h - 1, 1) - 1, 2 * x / max(w - 1, 1) - 1
        return [y**i * x**j for i in range(degree + 1) for j in range(degree + 1 - i)]

    yy, xx = np.meshgrid(centres_y, centres_x, indexing="ij")
    # Start from the blocks near the median (the paper, which covers most of the sheet),
    # fit a plane, then a cubic, each time keeping the blocks close to the fit.
    keep = np.abs(coarse - np.median(coarse)) <= max(2.5 * noise_sigma(coarse), 10.0)
    designs: dict[int, np.ndarray] = {}  # the terms at the blocks' centres, per degree, made once

    def design_of(degree: int) -> np.ndarray:
        if degree not in designs:
            designs[degree] = np.stack([t.ravel() for t in terms(yy, xx, degree)], axis=1)
        return designs[degree]

    for degree in (1, 1, 3, 3, 3, 3):
        design = design_of(degree)
        if keep.sum() < 3 * design.shape[1]:
            degree = 0 if keep.sum() < 3 * 3 else 1
            design = design_of(degree)
            if keep.sum() == 0:
                keep[:] = True
        a = design[keep]
        coef = np.linalg.solve(a.T @ a + 1e-6 * np.eye(a.shape[1]), a.T @ coarse[keep])  # least squares
        residual = coarse - design @ coef
        spread = max(noise_sigma(residual[keep]), 0.5)
        keep = np.abs(residual) < 2.5 * spread
    y = np.arange(h, dtype=np.float32)[:, None]
    x = np.arange(w, dtype=np.float32)[None, :]
    return sum(c * t for c, t in zip(coef.astype(np.float32), terms(y, x, degree))).astype(np.float32)


def _median_filter(a: np.ndarray, size: int) -> np.ndarray:
    """``scipy.ndimage.median_filter(a, size=(size, size), mode="reflect")``, the same values,
    computed as one partition over a window view (several times faster on small arrays)."""
    lo, hi = size // 2, size - 1 - size // 2
    if size > min(a.shape):  # reflections of reflections: SciPy's own
        from scipy import ndimage

        return ndimage.median_filter(a, size=(size, size), mode="reflect")
    padded = np.pad(a, ((lo, hi), (lo, hi)), mode="symmetric")  # SciPy's "reflect"
    windows = np.lib.stride_tricks.sliding_window_view(padded, (size, size)).reshape(*a.shape, size * size)
    k = size * size // 2  # SciPy's rank for an even count: the upper of the two middle values
    return np.partition(windows, k, axis=-1)[..., k]


def _dark_ink(gray: np.ndarray, side: int = 96) -> bool | None:
    """Whether the ink is darker than the paper; None when nothing stands out (a blank image).

    The paper is what a median over a third of the picture sees (ink is a minority of
    thin strokes; a median keeps the edges of shadows, unlike a mean); the ink is what
    stands out from it, on one side. Measured on a copy at most ``side`` pixels across (the
    median on one half that size when ``side`` is over 48).
    """
    from scipy import ndimage

    h, w = gray.shape
    scale = min(1.0, side / max(h, w))
    small = resize(gray, (max(1, round(h * scale)), max(1, round(w * scale))), Image.Resampling.BOX)
    sh, sw = small.shape
    coarse = resize(small, (max(1, sh // 2), max(1, sw // 2)), Image.Resampling.BOX) if max(sh, sw) > 48 else small
    size = max(3, round(max(coarse.shape) / 3))
    paper = _median_filter(coarse, size)
    d = small - (resize(paper, small.shape, Image.Resampling.BILINEAR) if coarse is not small else paper)
    top = float(np.abs(d).max())
    # The noise: the spread of the finest detail, or of the paper, whichever is less.
    noise = min(noise_sigma(small - ndimage.gaussian_filter(small, 2.0)), noise_sigma(d))
    threshold = max(6 * noise, 0.25 * top)
    if top < max(8 * noise, 4.0):
        return None
    low = np.clip(-d - threshold, 0, None).sum()
    high = np.clip(d - threshold, 0, None).sum()
    if 0.67 < low / (high + 1e-9) < 1.5:  # both alike: the border is the paper
        border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
        return bool(np.median(border) > np.median(gray) or np.median(border) > 127)
    return bool(low > high)


def _select_digit(ink: np.ndarray, threshold: float, *, neighbours: bool = True) -> np.ndarray:
    """Boolean mask of the digit: the largest connected region above ``threshold`` by ink
    mass, plus (with ``neighbours``) every region close to the growing digit holding at
    least 2 % of its mass."""
    from scipy import ndimage

    labels, n = ndimage.label(ink > threshold, structure=np.ones((3, 3)))
    if n == 0:
        return np.zeros(ink.shape, dtype=bool)
    mass = np.bincount(labels.ravel(), weights=ink.ravel(), minlength=n + 1)[1:]  # (sum_labels, faster)
    boxes = ndimage.find_objects(labels)
    # A large region touching the picture's edge is the table around the sheet, the sheet's
    # edge or a shadow, not a digit: left out unless there is nothing else.
    h, w = ink.shape
    background = np.array(
        [
            (r.start == 0 or c.start == 0 or r.stop == h or c.stop == w)
            and (r.stop - r.start > h / 2 or c.stop - c.start > w / 2)
            for r, c in boxes
        ]
    )
    if not background.all():
        mass = np.where(background, -1.0, mass)
    order = np.argsort(-mass)
    chosen = [int(order[0])]
    top, bottom = boxes[order[0]][0].start, boxes[order[0]][0].stop
    left, right = boxes[order[0]][1].start, boxes[order[0]][1].stop
    changed = neighbours
    while changed:
        changed = False
        reach = 0.35 * max(bottom - top, right - left)
        for k in order[1:]:
            k = int(k)
            if k in chosen or mass[k] < 0.02 * mass[chosen[0]]:  # (background: mass -1)
                continue
            r, c = boxes[k]
            gap_y = max(0, r.start - bottom, top - r.stop)
            gap_x = max(0, c.start - right, left - c.stop)
            if max(gap_y, gap_x) <= reach:
                chosen.append(k)
                top, bottom = min(top, r.start), max(bottom, r.stop)
                left, right = min(left, c.start), max(right, c.stop)
                changed = True
    kept = np.zeros(n + 1, dtype=bool)
    kept[np.asarray(chosen) + 1] = True
    return kept[labels]


def to_ink(gray: np.ndarray, paper: np.ndarray, dark: bool, noise: float) -> tuple[np.ndarray, float]:
    """The ink against the paper, float32 in [0, 255], and the pixel ``noise`` in those units.

    Dark ink: ``255 (1 - gray / paper)``, the ink's contrast relative to the paper under
    it, so the illumination cancels out. Light ink: ``gray - paper``.
    """
    diff = gray - paper
    if dark:
        ink = np.clip(-diff * (255 / np.maximum(paper, 1.0)), 0, 255)
        return ink.astype(np.float32), noise * 255 / max(float(np.median(paper)), 1.0)
    return np.clip(diff, 0, 255).astype(np.float32), noise


def stroke_width(mask: np.ndarray) -> float:
    """Twice the mean distance from an ink pixel to the nearest paper pixel (pixels)."""
    from scipy import ndimage

    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if len(rows) == 0:
        return 0.0
    mask = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    framed = np.zeros((mask.shape[0] + 2, mask.shape[1] + 2), dtype=bool)  # paper all around
    framed[1:-1, 1:-1] = mask
    dist = ndimage.distance_transform_edt(framed)[1:-1, 1:-1]
    return float(2 * dist[mask].mean())


def find_digit(gray: np.ndarray, *, polarity_side: int = 96) -> Found:
    """Paper, ink and the digit on ``gray``, float32 (h, w) in [0, 255] (steps 2 to 4 of
    :mod:`~logreg_mnist.images.pipeline`); ``digit`` is None when there is none.

    ``polarity_side``: the polarity is read on a copy at most this many pixels across.
    """
    from scipy import ndimage  # here: an MNIST-like image (the common case) needs none of it

    h, w = gray.shape
    if min(h, w) < 2 or float(gray.max() - gray.min()) < 8:
        return Found(None, False)
    blur = float(np.clip(max(h, w) / 500, 0.5, 2.0))  # noise suppression, in proportion to the image

    # Paper and ink: the polarity, then the ink's contrast against the local paper, twice:
    # first against a smooth fit of the paper (to find the ink and its stroke width), then
    # against a closing of the image that size, which follows the edges of shadows too.
    smooth_gray = ndimage.gaussian_filter(gray, blur)
    dark = _dark_ink(smooth_gray, polarity_side)
    if dark is None:
        return Found(None, False)
    fit = _paper_fit(smooth_gray)
    # The noise left after the smoothing: the spread of the finest detail (not of the light).
    noise = noise_sigma(smooth_gray - ndimage.gaussian_filter(smooth_gray, 3 * blur))
    ink, sigma = to_ink(smooth_gray, fit, dark, noise)
    peak = float(ink.max())
    if peak < max(8 * sigma, 8.0):
        return Found(None, dark)
    stroke = stroke_width(_select_digit(ink, max(5 * sigma, 0.5 * peak), neighbours=False))
    size = int(np.clip(4 * stroke, 5, max(h, w) / 2))
    # Beyond the edges: a mirror image (continuing gradients) with the ink replaced by the fit.
    reach = 2 * max(1, int(stroke)) + 1
    inky = ndimage.maximum_filter(ink > max(4 * sigma, 0.15 * peak), size=(reach, reach))
    padded = np.pad(np.where(inky, fit, smooth_gray), size, mode="reflect", reflect_type="odd")
    padded[size:-size, size:-size] = smooth_gray
    closing = ndimage.grey_closing if dark else ndimage.grey_opening
    paper = closing(padded, size=(size, size))[size:-size, size:-size]
    paper = ndimage.gaussian_filter(paper, size / 8)
    ink, sigma = to_ink(smooth_gray, paper, dark, noise)
    peak = float(ink.max())
    if peak < max(8 * sigma, 8.0):
        return Found(None, dark)
    strong = max(5 * sigma, 0.25 * peak)

    # The digit: largest region plus close neighbours; soft edges kept within a margin.
    mask = _select_digit(ink, strong)
    margin = max(1, int(round(2 * blur)))
    near = ndimage.binary_dilation(mask, iterations=margin)
    level = float(np.percentile(ink[mask], 90)) if mask.any() else peak
    digit = np.where(near, np.clip((ink - 2 * sigma) / max(level - 2 * sigma, 1e-6), 0, 1) * 255, 0)
    support = near & (digit > 0.1 * 255)
    rows, cols = np.nonzero(support.any(axis=1))[0], np.nonzero(support.any(axis=0))[0]
    if len(rows) == 0 or max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 < max(4, MIN_DIGIT * max(h, w)):
        return Found(None, dark)  # nothing, or a speck: not a digit
    box = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
    digit = digit[box[0] : box[1], box[2] : box[3]].astype(np.float32)
    return Found(digit, dark, box, near, paper)
