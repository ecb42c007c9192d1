"""Making a user's picture look like an MNIST digit (minimal version).

The rules are those of :mod:`logreg_mnist.predict`: grayscale (transparent areas
become white paper), inverted when the border is light, then cropped to the digit,
scaled to fit 20x20 and centred by its centre of mass in a 28x28 frame.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import DataError
from .predict import BOX, SIDE, _center_of_mass_frame

MAX_PIXELS = 40_000_000  # larger images are refused before decoding (decompression bombs)


@dataclass(frozen=True)
class Prepared:
    """An image as the model sees it.

    Attributes:
        pixels: uint8 array of shape (28, 28), a light digit on a dark background.
        blank: nothing was drawn (every pixel is 0).
        inverted: the picture was dark on light and was inverted.
    """

    pixels: np.ndarray
    blank: bool
    inverted: bool


def open_image(source: str | os.PathLike | bytes, *, name: str | None = None) -> Image.Image:
    """Open and decode an image file or bytes; :class:`DataError` for anything else."""
    name = name or ("the image" if isinstance(source, bytes) else str(source))
    try:
        im = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        width, height = im.size
        if width * height > MAX_PIXELS:
            raise DataError(f"{name}: expected at most {MAX_PIXELS:,} pixels, found {width}x{height}")
        im.load()
        return ImageOps.exif_transpose(im)
    except UnidentifiedImageError:
        head = (source[:8] if isinstance(source, bytes) else b"").hex()
        raise DataError(f"{name}: expected an image (PNG, JPEG, ...), found data of no image format"
                        + (f" (starting 0x{head})" if head else "")) from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(f"{name}: expected an image (PNG, JPEG, ...), cannot decode it: {e}") from None


def prepare(image: Image.Image, *, raw: bool = False) -> Prepared:
    """The 28x28 uint8 input the model sees; ``raw``: a 28x28 image's gray levels as they are."""
    im = image
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    gray = np.asarray(im.convert("L"), dtype=np.float64)
    if raw:
        if gray.shape != (SIDE, SIDE):
            raise DataError(f"expected a 28x28 image with raw=True, found {image.size[0]}x{image.size[1]}")
        pixels = gray.astype(np.uint8)
        return Prepared(pixels=pixels, blank=not pixels.any(), inverted=False)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    inverted = bool(np.median(border) > 127)
    if inverted:
        gray = 255.0 - gray
    if gray.shape != (SIDE, SIDE):
        ys, xs = np.nonzero(gray > 0.2 * gray.max()) if gray.max() > 0 else ((), ())
        if len(ys):
            gray = gray[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        h, w = gray.shape
        scale = BOX / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = Image.fromarray(np.clip(gray, 0, 255).astype(np.uint8)).resize(size, Image.Resampling.LANCZOS)
        gray = _center_of_mass_frame(np.asarray(small, dtype=np.float64))
    pixels = np.clip(np.round(gray), 0, 255).astype(np.uint8)
    return Prepared(pixels=pixels, blank=not pixels.any(), inverted=inverted)
