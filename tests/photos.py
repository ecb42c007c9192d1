"""Photos of ink on paper made from MNIST digits, for measuring the image pipeline honestly.

Each digit (28x28, light on dark) is drawn as dark ink on a sheet of paper: the digit's
20-pixel box becomes 150-500 pixels, placed off-centre on a larger sheet, then the sheet is
lit unevenly (a gradient, vignetting, sometimes a soft shadow), slightly rotated, blurred,
made noisy, and saved as JPEG at various qualities or as PNG, in colour or in gray. Used by
``tests/test_images.py`` and ``benchmarks/bench_photos.py``.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter


def photo_of_digit(digit: np.ndarray, rng: np.random.Generator, box_range=(150, 500),
                   margin_range=(0.05, 0.8)) -> bytes:
    """An encoded photo (JPEG or PNG bytes) of the uint8 (28, 28) MNIST ``digit`` written on paper.

    ``box_range``: the digit's 20-pixel box becomes this many photo pixels; ``margin_range``:
    the paper around the digit's 28-pixel frame on each side, as a fraction of the frame.
    """
    box = rng.uniform(*box_range)
    frame = int(round(28 * box / 20))
    ink = Image.fromarray(digit).resize((frame, frame), Image.Resampling.BICUBIC)
    angle = rng.uniform(-4, 4)
    ink = ink.rotate(angle, resample=Image.Resampling.BICUBIC)
    alpha = np.clip(np.asarray(ink, dtype=np.float32) / 255, 0, 1)

    # The sheet: margins of 5-80 % of the frame on each side, so the digit sits off-centre.
    top, bottom, left, right = (int(frame * rng.uniform(*margin_range)) for _ in range(4))
    h, w = frame + top + bottom, frame + left + right
    a = np.zeros((h, w), dtype=np.float32)
    a[top : top + frame, left : left + frame] = alpha * rng.uniform(0.75, 1.0)

    paper = (rng.uniform(170, 250) + rng.uniform(-10, 10, size=3)).astype(np.float32)
    pen = rng.choice([np.array([20.0, 20, 25]), np.array([30.0, 40, 120]), np.full(3, rng.uniform(10, 90))])
    pen = pen.astype(np.float32)
    img = paper[None, None, :] * (1 - a[..., None]) + pen[None, None, :] * a[..., None]

    # Uneven light: a gradient, vignetting and sometimes a soft shadow across the sheet.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy, xx = yy / h - 0.5, xx / w - 0.5
    theta = rng.uniform(0, 2 * np.pi)
    light = np.float32(1) + rng.uniform(0, 0.35) * (np.cos(theta) * xx + np.sin(theta) * yy) * 2
    light -= rng.uniform(0, 0.3) * (xx**2 + yy**2) * 2
    if rng.random() < 0.3:
        phi = rng.uniform(0, 2 * np.pi)
        edge = np.cos(phi) * xx + np.sin(phi) * yy - rng.uniform(-0.3, 0.3)
        light *= 1 - rng.uniform(0.1, 0.35) / (1 + np.exp(-edge * rng.uniform(8, 30)))
    img = img * light[..., None]

    picture = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    picture = picture.filter(ImageFilter.GaussianBlur(rng.uniform(0, 2)))
    noise = rng.standard_normal(size=(h, w, 3), dtype=np.float32) * np.float32(rng.uniform(2, 10))
    img = np.asarray(picture, dtype=np.float32) + noise
    picture = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    if rng.random() < 0.4:
        picture = picture.convert("L")
    out = io.BytesIO()
    if rng.random() < 0.7:
        picture.save(out, "JPEG", quality=int(rng.integers(30, 96)))
    else:
        picture.save(out, "PNG")
    return out.getvalue()


def photo_set(digits: np.ndarray, seed: int = 0, **ranges) -> list[bytes]:
    """A photo per uint8 (n, 28, 28) digit, reproducibly from ``seed`` (``ranges``: see above)."""
    rng = np.random.default_rng(seed)
    return [photo_of_digit(d, rng, **ranges) for d in digits]
