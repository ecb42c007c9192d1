"""Using a trained model: predictions on a user's files, and evaluation on the splits.

Inputs a user can hand in (:func:`load_inputs`):
    * images (PNG, JPEG, GIF, BMP, TIFF, WebP, PGM/PPM; 8- or 16-bit, palette, CMYK):
      brought into MNIST's form by :func:`logreg_mnist.images.prepare` (a photo or a scan
      of a digit is cropped, cleaned and laid out as MNIST's digits were), or taken as
      they are with ``raw=True`` (28x28 only);
    * IDX image files (``*-images-idx3-ubyte[.gz]``): every image in them;
    * ``.npy`` arrays of shape (28, 28), (784,), (n, 28, 28) or (n, 784), uint8 (0-255)
      or float in [0, 1]: the header is checked against the file's size before anything
      is allocated, the data memory-mapped, object arrays refused;
    * a directory: every such file in it, sorted by name (hidden files and other files
      are skipped);
    * ``-``: one image read from standard input.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .data import Dataset, read_idx
from .data.idx import GZIP_MAGIC
from .data.pixels import BLANK_LEVEL, PIXEL_SCALE, SIDE
from .errors import DataError, NotAnImageError
from .images import MAX_BYTES, Prepared, open_image, prepare
from .model import LogisticRegression

IMAGE_SUFFIXES = {
    ".png",
    ".jpg",
    ".jpeg",
    ".jpe",
    ".gif",
    ".bmp",
    ".dib",
    ".tif",
    ".tiff",
    ".webp",
    ".pgm",
    ".ppm",
    ".pbm",
    ".pnm",
}
LOW_CONFIDENCE = 0.5  # a top probability below this is flagged as a guess
_NPY_MAGIC = b"\x93NUMPY"
_THUMBNAIL = 256  # longest side of the copy of each image kept for --show


@dataclass(frozen=True)
class Prediction:
    """The model's answer for one image.

    ``top`` holds the three most probable classes as (label, probability), best first;
    ``blank`` says no ink was found (the prediction means nothing); ``low_confidence``
    that the top probability is below :data:`LOW_CONFIDENCE`; ``inverted`` that a dark-on-
    light picture was flipped to MNIST's polarity.
    """

    input: str  # file name, with [index] for files holding several images
    label: int
    probability: float
    runner_up: int = -1
    runner_up_probability: float = 0.0
    top: tuple[tuple[int, float], ...] = ()
    blank: bool = False
    low_confidence: bool = False
    inverted: bool = False

    def to_dict(self) -> dict:
        return {
            "input": self.input,
            "label": self.label,
            "probability": self.probability,
            "runner_up": self.runner_up,
            "runner_up_probability": self.runner_up_probability,
            "top": [{"label": k, "probability": p} for k, p in self.top],
            "blank": self.blank,
            "low_confidence": self.low_confidence,
            "inverted": self.inverted,
        }


@dataclass
class Input:
    """One input file as the model sees it.

    Attributes:
        name: as given (a directory's files as ``DIR/NAME``; ``-`` as ``<stdin>``).
        features: float32 (n, n_in), ``pixels / 256``.
        prepared: for images, the :class:`~logreg_mnist.images.Prepared` result (one).
        original: for images, a copy of the picture (uint8 (h, w) or (h, w, 3), at most
            256 pixels on its longer side), for ``--show``.
    """

    name: str
    features: np.ndarray
    prepared: list[Prepared] = field(default_factory=list)
    original: np.ndarray | None = None


def _thumbnail(image) -> np.ndarray:
    from PIL import Image

    from .images import to_gray

    if image.mode in ("RGB", "RGBA", "P", "CMYK", "YCbCr", "RGBX"):
        small = image.convert("RGBA")
        paper = Image.new("RGBA", small.size, (255, 255, 255, 255))
        small = Image.alpha_composite(paper, small).convert("RGB")
    else:
        small = Image.fromarray(np.round(to_gray(image)).astype(np.uint8))
    small.thumbnail((_THUMBNAIL, _THUMBNAIL), Image.Resampling.LANCZOS)
    return np.asarray(small)


def _image_input(source, name: str, n_in: int, raw: bool) -> Input:
    if n_in != SIDE * SIDE:
        raise DataError(f"{name}: the model takes {n_in} features, images need 784 (28x28)")
    image = open_image(source, name=name)
    try:
        prepared = prepare(image, raw=raw)
    except DataError as e:
        raise DataError(f"{name}: {e}") from None
    return Input(name, prepared.features(), [prepared], _thumbnail(image))


def _array_to_features(arr: np.ndarray, name: str, n_in: int) -> np.ndarray:
    """(n, n_in) float32 from uint8 pixels or floats in [0, 1]."""
    if (arr.ndim in (1, 2) and arr.shape[-1] == n_in) or (
        arr.ndim in (2, 3) and arr.shape[-2:] == (SIDE, SIDE) and n_in == SIDE * SIDE
    ):
        flat = arr.reshape(-1, n_in)
    else:
        raise DataError(
            f"{name}: expected an array of shape (n, {n_in}) or (n, 28, 28) (one image or many), found {arr.shape}"
        )
    if len(flat) == 0:
        raise DataError(f"{name}: expected at least one image, found an array of shape {arr.shape} (no rows)")
    if arr.dtype == np.uint8:
        return np.asarray(flat, dtype=np.float32) * PIXEL_SCALE
    if arr.dtype.kind in "fiu" and not arr.dtype.fields:
        flat = np.asarray(flat, dtype=np.float32)
        if not (np.isfinite(flat).all() and flat.min() >= 0 and flat.max() <= 1):
            raise DataError(
                f"{name}: expected uint8 pixels or floats in [0, 1], found values in "
                f"[{flat.min()}, {flat.max()}] of dtype {arr.dtype}"
            )
        return flat
    raise DataError(f"{name}: expected uint8 pixels or floats in [0, 1], found dtype {arr.dtype}")


def load_npy(path: str | os.PathLike) -> np.ndarray:
    """A ``.npy`` file, memory-mapped, after checking its header against the file's size.

    Raises:
        DataError: not a ``.npy`` file (an ``.npz`` archive is named as such), a header
            that promises more data than the file holds, object arrays (never unpickled),
            an unreadable file.
    """
    from numpy.lib import format as npy_format

    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(len(_NPY_MAGIC))
            if head[:2] == b"PK":
                raise DataError(
                    f"{path}: expected a .npy array, found a zip archive (an .npz file? load it in "
                    f"Python and save one array with numpy.save)"
                )
            if head != _NPY_MAGIC:
                raise DataError(
                    f"{path}: expected a .npy array (starting with \\x93NUMPY), found "
                    f"{'an empty file' if not head else '0x' + head.hex()}"
                )
            f.seek(0)
            version = npy_format.read_magic(f)
            reader = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
            shape, _fortran_order, dtype = reader(f)
            offset = f.tell()
    except DataError:
        raise
    except OSError as e:
        raise DataError(f"{path}: cannot read the file: {e.strerror or e}") from None
    except (ValueError, EOFError) as e:
        raise DataError(
            f"{path}: expected a .npy array, found a damaged header ({' '.join(str(e).split())[:200]})"
        ) from None
    if dtype.hasobject:
        raise DataError(
            f"{path}: expected an array of numbers, found dtype {dtype} (object arrays are refused: "
            f"loading them would unpickle)"
        )
    promised = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if promised != size - offset:
        raise DataError(
            f"{path}: header promises shape {shape} of {dtype} = {promised:,} bytes of data, found {size - offset:,}"
        )
    if promised == 0:
        return np.zeros(shape, dtype=dtype)
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read as a .npy array: {' '.join(str(e).split())[:200]}") from None


def _read_stdin(stream: BinaryIO) -> bytes:
    data = stream.read(MAX_BYTES + 1)
    if not data:
        raise DataError("<stdin>: expected an image on standard input, found nothing")
    return data  # open_image refuses more than MAX_BYTES


def _expand(paths: list[str | os.PathLike]) -> list[str | Path]:
    """Directories replaced by their input files, sorted; ``-`` kept once."""
    out: list[str | Path] = []
    for p in paths:
        if str(p) == "-":
            if "-" in out:
                raise DataError("-: standard input can be read once, found '-' twice")
            out.append("-")
            continue
        path = Path(p)
        if path.is_dir():
            try:
                entries = sorted(
                    e
                    for e in path.iterdir()
                    if not e.name.startswith(".")
                    and e.is_file()
                    and (e.suffix.lower() in IMAGE_SUFFIXES | {".npy", ".gz"} or "idx" in e.name)
                )
            except OSError as e:
                raise DataError(f"{path}: cannot list the directory: {e.strerror or e}") from None
            if not entries:
                raise DataError(f"{path}: expected a directory holding images, .npy or IDX files, found none")
            out.extend(entries)
        else:
            out.append(path)
    return out


def load_inputs(
    paths: list[str | os.PathLike], n_in: int = SIDE * SIDE, *, raw: bool = False, stdin: BinaryIO | None = None
) -> list[Input]:
    """Each input as an :class:`Input`, following the rules of this module.

    Args:
        paths: files, directories, or ``-`` for one image on ``stdin``.
        n_in: the model's number of features.
        raw: take 28x28 images as they are (see :func:`logreg_mnist.images.prepare`).
        stdin: where ``-`` reads from (default: the process's standard input).
    """
    out = []
    for path in _expand(paths):
        if path == "-":
            data = _read_stdin(stdin if stdin is not None else sys.stdin.buffer)
            out.append(_image_input(data, "<stdin>", n_in, raw))
            continue
        name = str(path)
        try:
            with open(path, "rb") as f:
                head = f.read(8)
        except FileNotFoundError:
            raise DataError(f"{name}: no such file") from None
        except OSError as e:
            raise DataError(f"{name}: cannot read the file: {e.strerror or e}") from None
        suffix = Path(path).suffix.lower()
        if suffix == ".npy" or head.startswith(_NPY_MAGIC):
            arr = load_npy(path)
            features = _array_to_features(arr, name, n_in)
            out.append(Input(name, features))
        elif suffix not in IMAGE_SUFFIXES and (head[:2] == GZIP_MAGIC or head[:2] == b"\0\0"):
            arr = read_idx(path, kind="images")
            out.append(Input(name, _array_to_features(np.asarray(arr), name, n_in)))
        else:
            try:
                out.append(_image_input(path, name, n_in, raw))
            except NotAnImageError:
                raise DataError(
                    f"{name}: expected an image (PNG, JPEG, GIF, BMP, TIFF, WebP), an IDX images "
                    f"file or a .npy array, found {suffix or 'no suffix'} starting with "
                    f"0x{head.hex()}"
                ) from None
    return out


def check_picture_path(path: str | os.PathLike) -> Path:
    """Where ``--show`` will write: a ``.png`` name in an existing directory (checked before any work)."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise DataError(f"{path}: expected a .png file name for the picture, found {path.suffix or 'no suffix'}")
    if not path.parent.is_dir():
        raise DataError(f"{path}: expected an existing directory to write the picture in, found no {path.parent}")
    if path.is_dir():
        raise DataError(f"{path}: expected a file name for the picture, found a directory")
    return path


def predictions(model: LogisticRegression, inputs: list[Input]) -> list[Prediction]:
    """One :class:`Prediction` per image in ``inputs``, with the runner-up and the flags."""
    results = []
    for item in inputs:
        probs = model.p_y_given_x(item.features)
        order = np.argsort(-probs, axis=1, kind="stable")
        for i in range(len(item.features)):
            top = tuple((int(k), float(probs[i, k])) for k in order[i, :3])
            if item.prepared:
                blank, inverted = item.prepared[i].blank, item.prepared[i].inverted
            else:
                blank, inverted = bool(item.features[i].max() < BLANK_LEVEL * PIXEL_SCALE), False
            runner_up = top[1] if len(top) > 1 else (-1, 0.0)
            results.append(
                Prediction(
                    item.name if len(item.features) == 1 else f"{item.name}[{i}]",
                    top[0][0],
                    top[0][1],
                    runner_up[0],
                    runner_up[1],
                    top,
                    blank,
                    top[0][1] < LOW_CONFIDENCE,
                    inverted,
                )
            )
    return results


def predict_files(model: LogisticRegression, paths: list[str | os.PathLike], *, raw: bool = False) -> list[Prediction]:
    """One :class:`Prediction` per image in the given files (see :func:`load_inputs`)."""
    return predictions(model, load_inputs(paths, model.n_in, raw=raw))


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
        report[name] = {
            "error": float(wrong_mask.mean()),
            "wrong": int(wrong_mask.sum()),
            "n": len(split),
            "per_class": per_class,
        }
    return report
