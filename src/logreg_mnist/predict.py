"""Using a trained model: predictions on a user's files, and evaluation on the splits.

Inputs a user can hand in:
    * PNG or JPEG images, any size or colour: converted to grayscale, made a light
      digit on a dark background (an image whose border is mostly light is
      inverted: the median of its outermost pixels is above 127), then brought to
      MNIST's layout: the digit's bounding box scaled to fit 20x20, centred by its
      centre of mass in a 28x28 frame. A 28x28 image is used as it is (after the
      inversion rule).
    * IDX image files (``*-images-idx3-ubyte[.gz]``): every image in them.
    * ``.npy`` arrays of shape (28, 28), (784,), (n, 28, 28) or (n, 784), uint8
      (0-255) or float in [0, 1]. Loaded with ``allow_pickle=False``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .data import Dataset, read_idx
from .data.idx import GZIP_MAGIC
from .data.mnist import PIXEL_SCALE
from .errors import DataError
from .model import LogisticRegression

SIDE = 28  # MNIST images are 28x28
BOX = 20  # ... with the digit normalised into a 20x20 box
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


@dataclass(frozen=True)
class Prediction:
    input: str  # file name, with [index] for files holding several images
    label: int
    probability: float

    def to_dict(self) -> dict:
        return {"input": self.input, "label": self.label, "probability": self.probability}


def _center_of_mass_frame(digit: np.ndarray) -> np.ndarray:
    """Place a digit (h, w) with h, w <= 20 in a 28x28 frame, centred by its centre of mass."""
    frame = np.zeros((SIDE, SIDE), dtype=np.float64)
    h, w = digit.shape
    total = digit.sum()
    if total > 0:
        cy = (digit.sum(axis=1) * np.arange(h)).sum() / total
        cx = (digit.sum(axis=0) * np.arange(w)).sum() / total
    else:
        cy, cx = (h - 1) / 2, (w - 1) / 2
    top = int(round(SIDE / 2 - 0.5 - cy))
    left = int(round(SIDE / 2 - 0.5 - cx))
    top = min(max(top, 0), SIDE - h)
    left = min(max(left, 0), SIDE - w)
    frame[top : top + h, left : left + w] = digit
    return frame


def image_to_pixels(path: str | os.PathLike) -> np.ndarray:
    """A PNG or JPEG file as MNIST-like uint8 pixels of shape (784,): light digit on dark."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                # Transparent parts become white paper under a dark-on-light drawing.
                rgba = im.convert("RGBA")
                paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                im = Image.alpha_composite(paper, rgba)
            gray = np.asarray(im.convert("L"), dtype=np.float64)
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"{path}: cannot read as an image: {e}") from None
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if np.median(border) > 127:
        gray = 255.0 - gray  # dark digit on light paper: invert to MNIST's light-on-dark
    if gray.shape != (SIDE, SIDE):
        ys, xs = np.nonzero(gray > 0.2 * gray.max()) if gray.max() > 0 else ((), ())
        if len(ys):
            gray = gray[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        h, w = gray.shape
        scale = BOX / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = Image.fromarray(np.clip(gray, 0, 255).astype(np.uint8)).resize(size, Image.Resampling.LANCZOS)
        gray = _center_of_mass_frame(np.asarray(small, dtype=np.float64))
    return np.clip(np.round(gray), 0, 255).astype(np.uint8).reshape(-1)


def _array_to_features(arr: np.ndarray, name: str, n_in: int) -> np.ndarray:
    """(n, n_in) float32 from uint8 pixels or floats in [0, 1]."""
    if arr.ndim in (1, 2) and arr.shape[-1] == n_in:
        flat = arr.reshape(-1, n_in)
    elif arr.ndim in (2, 3) and arr.shape[-2:] == (SIDE, SIDE) and n_in == SIDE * SIDE:
        flat = arr.reshape(-1, n_in)
    else:
        raise DataError(
            f"{name}: expected an array of shape (n, {n_in}) or (n, 28, 28) (one image or many), found {arr.shape}"
        )
    if arr.dtype == np.uint8:
        return flat.astype(np.float32) * PIXEL_SCALE
    if arr.dtype.kind in "fiu":
        flat = flat.astype(np.float32)
        if flat.size and not (np.isfinite(flat).all() and flat.min() >= 0 and flat.max() <= 1):
            raise DataError(f"{name}: expected uint8 pixels or floats in [0, 1], found values in "
                            f"[{flat.min()}, {flat.max()}] of dtype {arr.dtype}")
        return flat
    raise DataError(f"{name}: expected uint8 pixels or floats in [0, 1], found dtype {arr.dtype}")


def load_inputs(paths: list[str | os.PathLike], n_in: int = SIDE * SIDE) -> list[tuple[str, np.ndarray]]:
    """Each file as (name, features (n, n_in) float32), following the rules of this module."""
    out = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        suffix = path.suffix.lower()
        with open(path, "rb") as f:
            head = f.read(4)
        if suffix in IMAGE_SUFFIXES:
            if n_in != SIDE * SIDE:
                raise DataError(f"{path}: the model takes {n_in} features, images need 784 (28x28)")
            out.append((str(path), _array_to_features(image_to_pixels(path), str(path), n_in)))
        elif suffix == ".npy":
            try:
                arr = np.load(path, allow_pickle=False)
            except (ValueError, OSError) as e:
                raise DataError(f"{path}: cannot read as a .npy array (object arrays are refused): {e}") from None
            out.append((str(path), _array_to_features(arr, str(path), n_in)))
        elif head[:2] == GZIP_MAGIC or head[:2] == b"\0\0":
            arr = read_idx(path, kind="images")
            out.append((str(path), _array_to_features(np.asarray(arr), str(path), n_in)))
        else:
            raise DataError(f"{path}: expected a PNG or JPEG image, an IDX images file or a .npy array, "
                            f"found {suffix or 'no suffix'} starting with 0x{head.hex()}")
    return out


def predict_files(model: LogisticRegression, paths: list[str | os.PathLike]) -> list[Prediction]:
    """One :class:`Prediction` per image in the given files."""
    results = []
    for name, x in load_inputs(paths, model.n_in):
        probs = model.p_y_given_x(x)
        labels = probs.argmax(axis=1)
        for i, (label, p) in enumerate(zip(labels, probs[np.arange(len(x)), labels])):
            results.append(Prediction(name if len(x) == 1 else f"{name}[{i}]", int(label), float(p)))
    return results


def evaluate(model: LogisticRegression, data: Dataset) -> dict:
    """Validation and test error over every example, and the test error per class.

    Returns:
        ``{"valid": {...}, "test": {...}}``, each with ``error``, ``wrong``, ``n`` and
        ``per_class``: a list of ``{"label", "n", "wrong", "error"}``.
    """
    if model.n_in != data.n_features:
        raise DataError(f"the model takes {model.n_in} features, the data has {data.n_features}")
    report = {}
    for name in ("valid", "test"):
        split = data.split(name)
        pred = model.predict(split.images)
        wrong_mask = pred != split.labels
        per_class = []
        for label in range(max(model.n_out, data.n_classes)):
            mask = split.labels == label
            n, wrong = int(mask.sum()), int(wrong_mask[mask].sum())
            per_class.append({"label": label, "n": n, "wrong": wrong, "error": wrong / n if n else None})
        report[name] = {"error": float(wrong_mask.mean()), "wrong": int(wrong_mask.sum()),
                        "n": len(split), "per_class": per_class}
    return report
