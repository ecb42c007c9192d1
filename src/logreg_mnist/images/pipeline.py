"""The pipeline that brings a picture of a digit into MNIST's form (:func:`prepare`).

MNIST's digits were made from scanned ink: the digit was cropped, scaled so that its
longer side is 20 pixels (keeping its aspect ratio, with anti-aliasing), and placed in a
28x28 frame so that its centre of mass is at the frame's centre (row 14, column 14), light
ink on a black background. :func:`prepare` does the same to a photo or a scan:

1. **grayscale**: transparent parts are composited on white paper; 16-bit and float
   images are scaled by their bit depth (not clipped). A picture of at most
   :data:`SMALL_SIDE` pixels on its longer side (a page's canvas, a crop) goes through
   steps 2 to 4 as it is; a larger one (a photo) through a copy reduced to
   :data:`ANALYSIS_SIDE` pixels on its longer side: the paper, the polarity and the
   digit's box need no more;
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
   large regions along the picture's edge (a table around the sheet);
5. **the digit at the resolution it needs** (large pictures only): where the reduced copy
   holds the digit in fewer than :data:`DIGIT_SIDE` pixels, its box alone is cut from the
   full picture at up to that size, and its ink computed there against the paper of step 2;
6. **MNIST's layout**: very thin pen strokes are thickened, bold ones thinned, towards
   MNIST's stroke width; crop, longer side to 20 pixels (Lanczos, anti-aliased), centre of
   mass moved to (14, 14) by a whole-pixel shift in a 28x28 frame.

Steps 2 to 4 are :func:`logreg_mnist.images.analysis.find_digit`. A clean drawing (a
background of one exact level, the ink on one side of it: a page's pad, a paint program)
takes the short way of :mod:`.drawing` instead: the paper is known, so the digit is found on
a copy reduced by whole blocks and cut at up to 80 pixels, then laid out by step 6. A 28x28 input that
already looks like MNIST (dark background, empty border, the digit within 20x20) is passed
through untouched; ``raw=True`` skips everything (the image must then be 28x28 already).
The model sees ``pixels.reshape(1, 784) / 256`` as float32, as for MNIST itself
(:data:`logreg_mnist.data.pixels.PIXEL_SCALE`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..data.pixels import BLANK_LEVEL, PIXEL_SCALE, SIDE
from ..errors import DataError
from .analysis import MIN_DIGIT, Found, find_digit, noise_sigma, resize, stroke_width, to_ink
from .decode import to_gray
from .drawing import find_drawn_digit, gray_levels

__all__ = ["ANALYSIS_SIDE", "BOX", "DIGIT_SIDE", "MIN_DIGIT", "SMALL_SIDE", "Prepared", "looks_like_mnist", "prepare"]

SMALL_SIDE = 320  # pictures up to this longer side are analysed as they are (a page's 280-pixel canvas)
ANALYSIS_SIDE = 128  # larger ones: paper, ink and the digit's box found on a copy this size (longer side)
POLARITY_SIDE = 64  # and their polarity on one this size
DIGIT_SIDE = 80  # and the digit cut from the full picture at up to this many pixels on its longer side
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


def looks_like_mnist(gray: np.ndarray) -> bool:
    """True for a (28, 28) image laid out as MNIST: dark, an empty border, the digit within 20x20."""
    if gray.shape != (SIDE, SIDE) or gray.max() < 128 or np.median(gray) > 32:
        return False
    ring = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if ring.max() > 64:
        return False
    rows, cols = np.nonzero(gray.max(axis=1) > 32)[0], np.nonzero(gray.max(axis=0) > 32)[0]
    return rows[-1] - rows[0] < BOX + 2 and cols[-1] - cols[0] < BOX + 2


def _mnist_layout(digit: np.ndarray) -> np.ndarray:
    """A cropped digit (h, w) float in [0, 255] scaled to fit 20x20 and centred by mass in 28x28."""
    h, w = digit.shape
    scale = BOX / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    small = np.clip(resize(digit, size), 0, 255)
    frame = np.zeros((SIDE, SIDE), dtype=np.float32)
    total = float(small.sum(dtype=np.float64))
    if total <= 0:
        return frame
    # The centre of mass (as ndimage.center_of_mass, without its overhead on a 20x20 array).
    cy = float(small.sum(axis=1, dtype=np.float64) @ np.arange(small.shape[0])) / total
    cx = float(small.sum(axis=0, dtype=np.float64) @ np.arange(small.shape[1])) / total
    top, left = int(round(_CENTRE - cy)), int(round(_CENTRE - cx))
    sh, sw = small.shape
    # Paste with clipping (a whole-pixel shift, as MNIST's centring).
    y0, x0 = max(0, top), max(0, left)
    y1, x1 = min(SIDE, top + sh), min(SIDE, left + sw)
    frame[y0:y1, x0:x1] = small[y0 - top : y1 - top, x0 - left : x1 - left]
    return frame


def prepare(image: Image.Image, *, raw: bool = False) -> Prepared:
    """Bring a picture of one digit into MNIST's form (see the module's docstring).

    A picture of at most ``SMALL_SIDE`` (320) pixels on its longer side, such as the page's
    280-pixel canvas, is analysed as it is. A larger one (a photo) is analysed on a copy
    reduced to ``ANALYSIS_SIDE`` (128) pixels on its longer side, and its digit then cut
    from the full picture at up to ``DIGIT_SIDE`` (80) pixels.

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
    if max(image.size) > SMALL_SIDE:
        return _prepare_large(image)
    drawn = _prepare_drawing(image)
    if drawn is not None:
        return drawn
    gray = to_gray(image)
    if looks_like_mnist(gray):
        return Prepared(np.clip(np.round(gray), 0, 255).astype(np.uint8), blank=False, inverted=False)
    found = find_digit(gray)
    return _blank(found.dark) if found.digit is None else _finish(found.digit, found.dark)


def prepare_levels(levels: np.ndarray, *, raw: bool = False) -> Prepared:
    """:func:`prepare` for gray levels already decoded (uint8 (h, w)): the same result as
    ``prepare`` of an 8-bit gray image of them, without the round trip through Pillow."""
    if not raw and max(levels.shape) <= SMALL_SIDE:
        drawn = _drawing_from_levels(levels)
        if drawn is not None:
            return drawn
    return prepare(Image.fromarray(np.asarray(levels, dtype=np.uint8), mode="L"), raw=raw)


def _prepare_drawing(image: Image.Image) -> Prepared | None:
    """A clean drawing the short way of :mod:`.drawing`; None for any other picture (and for
    a 28x28 one laid out as MNIST already, which is passed through as it is)."""
    levels = gray_levels(image)
    return None if levels is None else _drawing_from_levels(levels)


def _drawing_from_levels(levels: np.ndarray) -> Prepared | None:
    """:func:`_prepare_drawing` on the picture's gray levels (uint8 (h, w))."""
    if levels.shape == (SIDE, SIDE) and looks_like_mnist(levels):
        return None
    drawn = find_drawn_digit(levels)
    if drawn is None:
        return None
    found, pixel = drawn
    return _blank(found.dark) if found.digit is None else _finish(found.digit, found.dark, pixel)


def _blank(inverted: bool) -> Prepared:
    return Prepared(np.zeros((SIDE, SIDE), dtype=np.uint8), blank=True, inverted=inverted)


def _gray_image(image: Image.Image) -> Image.Image:
    """The gray levels of :func:`to_gray` as a Pillow image: 8-bit (``L``) where they are whole
    numbers (gray and RGB pictures without transparency: no float copy of a large picture),
    else 32-bit float (``F``)."""
    if image.mode in ("L", "RGB") and "transparency" not in image.info:
        return image if image.mode == "L" else image.convert("L")
    return Image.fromarray(to_gray(image), mode="F")


def _prepare_large(image: Image.Image) -> Prepared:
    """Steps 2 to 4 on a copy reduced to :data:`ANALYSIS_SIDE`, then the digit cut from the picture."""
    picture = _gray_image(image)
    width, height = picture.size
    scale = ANALYSIS_SIDE / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    found = find_digit(
        np.asarray(picture.resize(size, Image.Resampling.BOX), dtype=np.float32), polarity_side=POLARITY_SIDE
    )
    if found.digit is None:
        return _blank(found.dark)
    digit = found.digit if max(found.digit.shape) >= DIGIT_SIDE else _cut(picture, found)
    return _finish(digit, found.dark)


def _cut(picture: Image.Image, found: Found) -> np.ndarray:
    """The digit cut from the full ``picture`` (``L`` or ``F``) at up to :data:`DIGIT_SIDE`
    pixels on its longer side, around the box :func:`find_digit` found on the reduced copy.
    The paper is the analysis's, enlarged; the ink and its stretch are computed as there."""
    from scipy import ndimage

    assert found.near is not None and found.paper is not None and found.digit is not None
    ah, aw = found.near.shape
    fy, fx = picture.size[1] / ah, picture.size[0] / aw  # picture pixels per analysis pixel
    r0, r1, c0, c1 = found.box
    m = 2  # analysis pixels around the digit
    r0, c0, r1, c1 = max(0, r0 - m), max(0, c0 - m), min(ah, r1 + m), min(aw, c1 + m)
    scale = min(1.0, DIGIT_SIDE / max(found.digit.shape[0] * fy, found.digit.shape[1] * fx))
    shape = (max(1, round((r1 - r0) * fy * scale)), max(1, round((c1 - c0) * fx * scale)))
    region = (c0 * fx, r0 * fy, c1 * fx, r1 * fy)
    crop = np.asarray(picture.resize(shape[::-1], Image.Resampling.BOX, box=region), dtype=np.float32)
    blur = float(np.clip(max(picture.size) * scale / 500, 0.5, 2.0))  # as the analysis would at this size
    smooth = ndimage.gaussian_filter(crop, blur)
    paper = resize(found.paper[r0:r1, c0:c1], shape, Image.Resampling.BILINEAR)
    # where the analysis allows the digit (one of its pixels around), then its mask at this resolution
    allowed = resize(found.near[r0:r1, c0:c1].astype(np.float32), shape, Image.Resampling.NEAREST) > 0.5
    allowed = ndimage.binary_dilation(allowed, iterations=max(1, int(np.ceil(max(fx, fy) * scale))))
    detail = smooth - ndimage.gaussian_filter(smooth, 3 * blur)  # the noise, measured on the paper around
    noise = noise_sigma(detail[~allowed] if np.count_nonzero(~allowed) >= 64 else detail)
    ink, sigma = to_ink(smooth, paper, found.dark, noise)
    strong = max(5 * sigma, 0.25 * float(ink[allowed].max(initial=0)))
    mask = allowed & (ink > strong)
    if not mask.any():
        return found.digit
    near = ndimage.binary_dilation(mask, iterations=max(1, int(round(2 * blur))))
    level = float(np.percentile(ink[mask], 90))
    digit = np.where(near, np.clip((ink - 2 * sigma) / max(level - 2 * sigma, 1e-6), 0, 1) * 255, 0)
    support = near & (digit > 0.1 * 255)
    rows, cols = np.nonzero(support.any(axis=1))[0], np.nonzero(support.any(axis=0))[0]
    if len(rows) == 0:
        return found.digit
    return digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].astype(np.float32)


def _grown(digit: np.ndarray, radius: int) -> np.ndarray:
    """``digit`` (float, >= 0) framed by ``radius`` zeros and dilated by a disk of that radius:
    SciPy's ``grey_dilation(framed, footprint=disk)`` exactly. A pen's usual radius, 1 or 2,
    is done as the maximum of shifted copies (a third of the general filter's time): the
    disk of radius 1 is a cross, that of radius 2 a cross grown by a cross (both: the pixels
    within that many steps along rows and columns). Beyond the frame SciPy mirrors the
    frame's zeros, which change no maximum: the shifts leave them out."""
    h, w = digit.shape
    framed = np.zeros((h + 2 * radius, w + 2 * radius), dtype=digit.dtype)
    framed[radius:-radius, radius:-radius] = digit  # room to grow
    if radius > 2:
        from scipy import ndimage

        disk = np.hypot(*np.mgrid[-radius : radius + 1, -radius : radius + 1]) <= radius
        return ndimage.grey_dilation(framed, footprint=disk)
    for _ in range(radius):
        grown = framed.copy()
        np.maximum(grown[1:], framed[:-1], out=grown[1:])  # the pixel above, below, left and right
        np.maximum(grown[:-1], framed[1:], out=grown[:-1])
        np.maximum(grown[:, 1:], framed[:, :-1], out=grown[:, 1:])
        np.maximum(grown[:, :-1], framed[:, 1:], out=grown[:, :-1])
        framed = grown
    return framed


def _finish(digit: np.ndarray, dark: bool, pixel: int = 1) -> Prepared:
    """Step 6 on the cropped digit: its stroke width towards MNIST's, then MNIST's layout.

    ``pixel``: the digit's pixels are blocks of this many of the picture's a side; its stroke
    width is judged as at the picture's resolution (the measure's one-pixel bias is in the
    digit's pixels).
    """
    from scipy import ndimage

    # Thin pen strokes thickened, bold ones thinned, towards MNIST's stroke width (measured
    # at the 20-pixel scale); strokes near it are left alone.
    longer = max(digit.shape)
    target = _MNIST_STROKE * longer / BOX
    width = stroke_width(digit > 127)
    if pixel > 1 and width > 0:
        width = ((width - 1) * pixel + 1) / pixel
    if 0 < width < 0.6 * target:
        radius = max(1, int(round((0.8 * target - width) / 2)))
        digit = _grown(digit, radius)
    elif width > 1.3 * target:
        radius = max(1, int(round((width - target) / 2)))
        disk = np.hypot(*np.mgrid[-radius : radius + 1, -radius : radius + 1]) <= radius
        thinner = ndimage.grey_erosion(digit, footprint=disk)
        if thinner.max() >= 128:  # never erase the digit
            rows, cols = np.nonzero(thinner.max(axis=1) > 0)[0], np.nonzero(thinner.max(axis=0) > 0)[0]
            digit = thinner[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]

    pixels = np.clip(np.round(_mnist_layout(digit)), 0, 255).astype(np.uint8)
    if pixels.max() < BLANK_LEVEL:
        return _blank(dark)
    return Prepared(pixels, blank=False, inverted=dark)
