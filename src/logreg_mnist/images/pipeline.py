"""The pipeline that brings a picture of a digit into MNIST's form (:func:`prepare`).

MNIST's digits were made from scanned ink: the digit was cropped, scaled so that its
longer side is 20 pixels (keeping its aspect ratio, with anti-aliasing), and placed in a
28x28 frame so that its centre of mass is at the frame's centre (row 14, column 14), light
ink on a black background. :func:`prepare` does the same to a photo or a scan:

1. **grayscale**: transparent parts are composited on white paper; 16-bit and float
   images are scaled by their bit depth (not clipped); large images are first reduced
   to :data:`WORK_SIDE` pixels on their longer side;
2. **paper and ink**: the **polarity** is the side on which thin features stand out from
   a median over a third of the picture (dark ink on light paper is flipped to MNIST's
   light on dark); the paper's brightness is fitted as a smooth cubic surface (robustly,
   leaving the ink out), then followed more closely by a closing (an opening for light
   ink) four stroke widths wide, so gradients, vignetting and the edges of shadows go;
3. **background subtraction and contrast stretch**: the ink's contrast relative to the
   local paper, so a shadowed part of the digit is as bright as a lit one, stretched so
   that the strokes' cores reach 255;
4. **the digit**: the largest connected ink region (by ink mass), plus the regions close
   to it (so a 5's detached top stroke stays); specks further away are dropped, and so are
   large regions along the picture's edge (a table around the sheet); very thin pen strokes
   are thickened, bold ones thinned, towards MNIST's stroke width;
5. **MNIST's layout**: crop, longer side to 20 pixels (Lanczos, anti-aliased), centre of
   mass moved to (14, 14) by a whole-pixel shift in a 28x28 frame.

A 28x28 input that already looks like MNIST (dark background, empty border, the digit
within 20x20) is passed through untouched; ``raw=True`` skips everything (the image must
then be 28x28 already). The model sees ``pixels.reshape(1, 784) / 256`` as float32, as
for MNIST itself (:data:`logreg_mnist.data.pixels.PIXEL_SCALE`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..data.pixels import BLANK_LEVEL, PIXEL_SCALE, SIDE
from ..errors import DataError
from .decode import WORK_SIDE, to_gray

MIN_DIGIT = 0.025  # a digit spans at least this fraction of the picture's longer side; less is a speck
BOX = 20  # the box MNIST's digits are scaled into, within the frame of SIDE pixels
_MNIST_STROKE = 2.3  # MNIST's typical stroke width in pixels at the 20-pixel scale (2 x mean distance to edge)
_CENTRE = 14.0  # MNIST's centre of mass: row and column 14 (measured: 13.99, 14.00 on the test set)


@dataclass(frozen=True)
class Prepared:
    """An image as the model sees it.

    Attributes:
        pixels: uint8 (28, 28), light digit on a dark background, as MNIST.
        blank: no ink was found (or too little to be a digit); ``pixels`` is then all zero
            (or, with ``raw=True``, the image as it is).
        inverted: the polarity was flipped (the input was dark ink on light paper).
    """

    pixels: np.ndarray
    blank: bool
    inverted: bool

    def features(self) -> np.ndarray:
        """The model's input: float32 (1, 784), ``pixels / 256`` as for MNIST."""
        return self.pixels.reshape(1, SIDE * SIDE).astype(np.float32) * PIXEL_SCALE


def _resize(a: np.ndarray, size: tuple[int, int], resample=Image.Resampling.LANCZOS) -> np.ndarray:
    """Resize float32 (h, w) to (height, width) = ``size`` with Pillow (anti-aliased when shrinking)."""
    h, w = size
    return np.asarray(
        Image.fromarray(np.ascontiguousarray(a, dtype=np.float32), mode="F").resize((w, h), resample), dtype=np.float32
    )


def looks_like_mnist(gray: np.ndarray) -> bool:
    """True for a (28, 28) image laid out as MNIST: dark, an empty border, the digit within 20x20."""
    if gray.shape != (SIDE, SIDE) or gray.max() < 128 or np.median(gray) > 32:
        return False
    ring = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if ring.max() > 64:
        return False
    rows, cols = np.nonzero(gray.max(axis=1) > 32)[0], np.nonzero(gray.max(axis=0) > 32)[0]
    return rows[-1] - rows[0] < BOX + 2 and cols[-1] - cols[0] < BOX + 2


def _noise_sigma(a: np.ndarray) -> float:
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
    keep = np.abs(coarse - np.median(coarse)) <= max(2.5 * _noise_sigma(coarse), 10.0)
    for degree in (1, 1, 3, 3, 3, 3):
        design = np.stack([t.ravel() for t in terms(yy, xx, degree)], axis=1)
        if keep.sum() < 3 * design.shape[1]:
            degree = 0 if keep.sum() < 3 * 3 else 1
            design = np.stack([t.ravel() for t in terms(yy, xx, degree)], axis=1)
            if keep.sum() == 0:
                keep[:] = True
        a = design[keep]
        coef = np.linalg.solve(a.T @ a + 1e-6 * np.eye(a.shape[1]), a.T @ coarse[keep])  # least squares
        residual = coarse - design @ coef
        spread = max(_noise_sigma(residual[keep]), 0.5)
        keep = np.abs(residual) < 2.5 * spread
    y = np.arange(h, dtype=np.float32)[:, None]
    x = np.arange(w, dtype=np.float32)[None, :]
    return sum(c * t for c, t in zip(coef.astype(np.float32), terms(y, x, degree))).astype(np.float32)


def _dark_ink(gray: np.ndarray) -> bool | None:
    """Whether the ink is darker than the paper; None when nothing stands out (a blank image).

    The paper is what a median over a third of the picture sees (ink is a minority of
    thin strokes; a median keeps the edges of shadows, unlike a mean); the ink is what
    stands out from it, on one side. Measured on a copy at most 96 pixels across.
    """
    from scipy import ndimage

    h, w = gray.shape
    scale = min(1.0, 96 / max(h, w))
    small = _resize(gray, (max(1, round(h * scale)), max(1, round(w * scale))), Image.Resampling.BOX)
    sh, sw = small.shape
    coarse = _resize(small, (max(1, sh // 2), max(1, sw // 2)), Image.Resampling.BOX) if max(sh, sw) > 48 else small
    size = max(3, round(max(coarse.shape) / 3))
    paper = ndimage.median_filter(coarse, size=(size, size), mode="reflect")
    d = small - (_resize(paper, small.shape, Image.Resampling.BILINEAR) if coarse is not small else paper)
    top = float(np.abs(d).max())
    # The noise: the spread of the finest detail, or of the paper, whichever is less.
    noise = min(_noise_sigma(small - ndimage.gaussian_filter(small, 2.0)), _noise_sigma(d))
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
    index = np.arange(1, n + 1)
    mass = np.asarray(ndimage.sum_labels(ink, labels, index))
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
    return np.isin(labels, np.asarray(chosen) + 1)


def _ink(gray: np.ndarray, paper: np.ndarray, dark: bool, noise: float) -> tuple[np.ndarray, float]:
    """The ink against the paper, float32 in [0, 255], and the pixel ``noise`` in those units.

    Dark ink: ``255 (1 - gray / paper)``, the ink's contrast relative to the paper under
    it, so the illumination cancels out. Light ink: ``gray - paper``.
    """
    diff = gray - paper
    if dark:
        ink = np.clip(-diff * (255 / np.maximum(paper, 1.0)), 0, 255)
        return ink.astype(np.float32), noise * 255 / max(float(np.median(paper)), 1.0)
    return np.clip(diff, 0, 255).astype(np.float32), noise


def _stroke_width(mask: np.ndarray) -> float:
    """Twice the mean distance from an ink pixel to the nearest paper pixel (pixels)."""
    from scipy import ndimage

    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if len(rows) == 0:
        return 0.0
    mask = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    dist = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    return float(2 * dist[mask].mean())


def _mnist_layout(digit: np.ndarray) -> np.ndarray:
    """A cropped digit (h, w) float in [0, 255] scaled to fit 20x20 and centred by mass in 28x28."""
    from scipy import ndimage

    h, w = digit.shape
    scale = BOX / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    small = np.clip(_resize(digit, size), 0, 255)
    frame = np.zeros((SIDE, SIDE), dtype=np.float32)
    if small.sum() <= 0:
        return frame
    cy, cx = ndimage.center_of_mass(small)
    top, left = int(round(_CENTRE - cy)), int(round(_CENTRE - cx))
    sh, sw = small.shape
    # Paste with clipping (a whole-pixel shift, as MNIST's centring).
    y0, x0 = max(0, top), max(0, left)
    y1, x1 = min(SIDE, top + sh), min(SIDE, left + sw)
    frame[y0:y1, x0:x1] = small[y0 - top : y1 - top, x0 - left : x1 - left]
    return frame


def prepare(image: Image.Image, *, raw: bool = False) -> Prepared:
    """Bring a picture of one digit into MNIST's form (see the module's docstring).

    Args:
        image: any Pillow image (from :func:`open_image`).
        raw: take a 28x28 image's gray levels as they are (no inversion, no cropping).

    Returns:
        :class:`Prepared`: uint8 (28, 28) pixels, light digit on dark, and the flags.

    Raises:
        DataError: ``raw=True`` and the image is not 28x28.
    """
    if raw:
        if image.size != (SIDE, SIDE):
            raise DataError(f"expected a 28x28 image with raw=True (--raw), found {image.size[0]}x{image.size[1]}")
        pixels = np.clip(np.round(to_gray(image)), 0, 255).astype(np.uint8)
        return Prepared(pixels, blank=bool(pixels.max() < BLANK_LEVEL), inverted=False)

    gray = to_gray(image)
    if looks_like_mnist(gray):
        return Prepared(np.clip(np.round(gray), 0, 255).astype(np.uint8), blank=False, inverted=False)
    from scipy import ndimage  # here: an MNIST-like image (the common case) needs none of it

    h, w = gray.shape
    if max(h, w) > WORK_SIDE:
        scale = WORK_SIDE / max(h, w)
        gray = _resize(gray, (max(1, round(h * scale)), max(1, round(w * scale))), Image.Resampling.BOX)
        h, w = gray.shape
    blank = Prepared(np.zeros((SIDE, SIDE), dtype=np.uint8), blank=True, inverted=False)
    if min(h, w) < 2 or float(gray.max() - gray.min()) < 8:
        return blank
    blur = float(np.clip(max(h, w) / 500, 0.5, 2.0))  # noise suppression, in proportion to the image

    # Paper and ink: the polarity, then the ink's contrast against the local paper, twice:
    # first against a smooth fit of the paper (to find the ink and its stroke width), then
    # against a closing of the image that size, which follows the edges of shadows too.
    smooth_gray = ndimage.gaussian_filter(gray, blur)
    dark = _dark_ink(smooth_gray)
    if dark is None:
        return blank
    fit = _paper_fit(smooth_gray)
    # The noise left after the smoothing: the spread of the finest detail (not of the light).
    noise = _noise_sigma(smooth_gray - ndimage.gaussian_filter(smooth_gray, 3 * blur))
    ink, sigma = _ink(smooth_gray, fit, dark, noise)
    peak = float(ink.max())
    if peak < max(8 * sigma, 8.0):
        return Prepared(blank.pixels, blank=True, inverted=dark)
    stroke = _stroke_width(_select_digit(ink, max(5 * sigma, 0.5 * peak), neighbours=False))
    size = int(np.clip(4 * stroke, 5, max(h, w) / 2))
    # Beyond the edges: a mirror image (continuing gradients) with the ink replaced by the fit.
    reach = 2 * max(1, int(stroke)) + 1
    inky = ndimage.maximum_filter(ink > max(4 * sigma, 0.15 * peak), size=(reach, reach))
    padded = np.pad(np.where(inky, fit, smooth_gray), size, mode="reflect", reflect_type="odd")
    padded[size:-size, size:-size] = smooth_gray
    closing = ndimage.grey_closing if dark else ndimage.grey_opening
    paper = closing(padded, size=(size, size))[size:-size, size:-size]
    ink, sigma = _ink(smooth_gray, ndimage.gaussian_filter(paper, size / 8), dark, noise)
    peak = float(ink.max())
    if peak < max(8 * sigma, 8.0):
        return Prepared(blank.pixels, blank=True, inverted=dark)
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
        return Prepared(blank.pixels, blank=True, inverted=dark)  # nothing, or a speck: not a digit
    digit = digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].astype(np.float32)

    # Thin pen strokes thickened, bold ones thinned, towards MNIST's stroke width (measured
    # at the 20-pixel scale); strokes near it are left alone.
    longer = max(digit.shape)
    target = _MNIST_STROKE * longer / BOX
    width = _stroke_width(digit > 127)
    if 0 < width < 0.6 * target:
        radius = max(1, int(round((0.8 * target - width) / 2)))
        disk = np.hypot(*np.mgrid[-radius : radius + 1, -radius : radius + 1]) <= radius
        digit = ndimage.grey_dilation(np.pad(digit, radius), footprint=disk)
    elif width > 1.3 * target:
        radius = max(1, int(round((width - target) / 2)))
        disk = np.hypot(*np.mgrid[-radius : radius + 1, -radius : radius + 1]) <= radius
        thinner = ndimage.grey_erosion(digit, footprint=disk)
        if thinner.max() >= 128:  # never erase the digit
            rows, cols = np.nonzero(thinner.max(axis=1) > 0)[0], np.nonzero(thinner.max(axis=0) > 0)[0]
            digit = thinner[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]

    pixels = np.clip(np.round(_mnist_layout(digit)), 0, 255).astype(np.uint8)
    if pixels.max() < BLANK_LEVEL:
        return Prepared(blank.pixels, blank=True, inverted=dark)
    return Prepared(pixels, blank=False, inverted=dark)
