"""What a user hands ``predict``: files, directories, pipes and standard input, read into arrays.

Inputs a user can hand in (:func:`load_inputs`, :func:`read_inputs`):
    * images (PNG, JPEG, GIF, BMP, TIFF, WebP, PGM/PPM; 8- or 16-bit, palette, CMYK):
      brought into MNIST's form by :func:`logreg_mnist.images.prepare` (a photo or a scan
      of a digit is cropped, cleaned and laid out as MNIST's digits were), or taken as
      they are with ``raw=True`` (28x28 only);
    * IDX image files (``*-images-idx3-ubyte[.gz]``): every image in them;
    * ``.npy`` arrays of shape (28, 28), (784,), (n, 28, 28) or (n, 784), uint8 (0-255)
      or float in [0, 1]: the header is checked against the file's size before anything
      is allocated, the data memory-mapped, object arrays refused;
    * a directory: every such file in it, sorted by name (hidden files and other files
      are skipped, and counted);
    * a pipe given as a path (``<(cat seven.png)``) or ``-`` (standard input): read once,
      as one image or one ``.npy`` array.

One input that cannot be read does not stop the others (:func:`read_inputs`). Image files
are prepared on all the cores this process may use, and come back in order.
"""

from __future__ import annotations

import io
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ._parallel import ordered_map, usable_cores
from .data import read_idx
from .data.idx import GZIP_MAGIC
from .data.pixels import PIXEL_SCALE, SIDE
from .errors import DataError, NotAnImageError
from .images import MAX_BYTES, Prepared, open_image, prepare

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
_NPY_MAGIC = b"\x93NUMPY"
_THUMBNAIL = 256  # longest side of the copy of each image kept for --show


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


def _image_input(source, name: str, n_in: int, raw: bool, thumbnail: bool = True) -> Input:
    if n_in != SIDE * SIDE:
        raise DataError(f"{name}: the model takes {n_in} features, images need 784 (28x28)")
    image = open_image(source, name=name)
    try:
        prepared = prepare(image, raw=raw)
    except DataError as e:
        raise DataError(f"{name}: {e}") from None
    return Input(name, prepared.features(), [prepared], _thumbnail(image) if thumbnail else None)


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


_STREAM_FORMATS = "an image (PNG, JPEG, GIF, BMP, TIFF, WebP) or a .npy array"
_SHOWN_SKIPPED = 5  # names of skipped files listed in the line that counts them


def _is_stream(path: str | os.PathLike) -> bool:
    """A pipe, a FIFO or a device given as a path (``<(cat seven.png)``, ``/dev/stdin``): read once, in order."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)


def _read_stream(stream: BinaryIO, name: str, where: str = "in the stream") -> bytes:
    """At most ``MAX_BYTES + 1`` bytes (open_image refuses more), read once."""
    data = stream.read(MAX_BYTES + 1)
    if not data:
        raise DataError(f"{name}: expected an image {where}, found nothing")
    return data


def _stream_input(data: bytes, name: str, n_in: int, raw: bool, thumbnail: bool = True) -> Input:
    """One input from a stream's bytes: a .npy array, else an image."""
    if data.startswith(_NPY_MAGIC):
        try:
            arr = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise DataError(f"{name}: cannot read as a .npy array: {' '.join(str(e).split())[:200]}") from None
        return Input(name, _array_to_features(arr, name, n_in))
    try:
        return _image_input(data, name, n_in, raw, thumbnail)
    except NotAnImageError:
        raise DataError(f"{name}: expected {_STREAM_FORMATS}, found data starting with 0x{data[:8].hex()}") from None


@dataclass
class Batch:
    """What :func:`read_inputs` made of the paths it was given.

    Attributes:
        inputs: the inputs read, in order.
        errors: one error per input that could not be read (a file, or a directory that
            could not be listed or held nothing to read), in order.
        skipped: per directory with files that are not inputs, one line counting them.
        tried: how many inputs were tried (a directory's files each count).
    """

    inputs: list[Input] = field(default_factory=list)
    errors: list[DataError] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    tried: int = 0


def _is_input_file(entry: Path) -> bool:
    return entry.suffix.lower() in IMAGE_SUFFIXES | {".npy", ".gz"} or "idx" in entry.name


def _directory(path: Path, batch: Batch) -> list[Path]:
    """The input files of a directory, sorted; the other files are counted in ``batch.skipped``."""
    try:
        files = sorted(e for e in path.iterdir() if e.is_file())
    except OSError as e:
        raise DataError(f"{path}: cannot list the directory: {e.strerror or e}") from None
    entries = [e for e in files if not e.name.startswith(".") and _is_input_file(e)]
    others = [e.name for e in files if e not in entries]
    listed = ", ".join(others[:_SHOWN_SKIPPED]) + (", ..." if len(others) > _SHOWN_SKIPPED else "")
    if not entries:
        skipped = f" (skipped {len(others)} other file{'s' if len(others) > 1 else ''}: {listed})" if others else ""
        raise DataError(f"{path}: expected a directory holding images, .npy or IDX files, found none{skipped}")
    if others:
        batch.skipped.append(
            f"{path}: skipped {len(others)} file{'s' if len(others) > 1 else ''} that "
            f"{'are' if len(others) > 1 else 'is'} not images, .npy or IDX files ({listed})"
        )
    return entries


def _file_input(path: Path, n_in: int, raw: bool, thumbnail: bool = True) -> Input:
    name = str(path)
    if _is_stream(path):
        try:
            with open(path, "rb") as f:
                return _stream_input(_read_stream(f, name), name, n_in, raw, thumbnail)
        except OSError as e:
            raise DataError(f"{name}: cannot read the stream: {e.strerror or e}") from None
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except FileNotFoundError:
        raise DataError(f"{name}: no such file") from None
    except OSError as e:
        raise DataError(f"{name}: cannot read the file: {e.strerror or e}") from None
    suffix = path.suffix.lower()
    if suffix == ".npy" or head.startswith(_NPY_MAGIC):
        return Input(name, _array_to_features(load_npy(path), name, n_in))
    if suffix not in IMAGE_SUFFIXES and (head[:2] == GZIP_MAGIC or head[:2] == b"\0\0"):
        arr = read_idx(path, kind="images")
        return Input(name, _array_to_features(np.asarray(arr), name, n_in))
    try:
        return _image_input(path, name, n_in, raw, thumbnail)
    except NotAnImageError:
        raise DataError(
            f"{name}: expected an image (PNG, JPEG, GIF, BMP, TIFF, WebP), an IDX images "
            f"file or a .npy array, found {suffix or 'no suffix'} starting with "
            f"0x{head.hex()}"
        ) from None


def read_inputs(
    paths: list[str | os.PathLike],
    n_in: int = SIDE * SIDE,
    *,
    raw: bool = False,
    stdin: BinaryIO | None = None,
    thumbnails: bool = True,
    workers: int | None = None,
    progress: bool | None = None,
) -> Batch:
    """Every input that can be read, and one error for each that cannot: one bad file does not
    stop the rest (see :class:`Batch`). Image files are prepared by a pool of processes (when
    there are at least :data:`POOL_FROM` of them and several cores), in the order given.

    Args:
        paths: files, directories, pipes given as paths, or ``-`` for one input on ``stdin``.
        n_in: the model's number of features.
        raw: take 28x28 images as they are (see :func:`logreg_mnist.images.prepare`).
        stdin: where ``-`` reads from (default: the process's standard input).
        thumbnails: keep a small copy of each image (:attr:`Input.original`, for ``--show``).
        workers: processes preparing image files (None: one per usable core; 1: this process).
        progress: a progress bar on stderr while image files are prepared (None: when stderr
            is a terminal and there are several).

    Raises:
        DataError: ``-`` given twice (standard input can be read once).
    """
    if sum(str(p) == "-" for p in paths) > 1:
        raise DataError("-: standard input can be read once, found '-' twice")
    batch = Batch()
    slots: list[Input | DataError | None] = []  # every input or its error, in order
    jobs: list[tuple[int, _FileJob]] = []  # image files, prepared below, each into its slot
    for p in paths:
        try:
            if str(p) == "-":
                batch.tried += 1
                data = _read_stream(stdin if stdin is not None else sys.stdin.buffer, "<stdin>", "on standard input")
                slots.append(_stream_input(data, "<stdin>", n_in, raw, thumbnails))
                continue
            path = Path(p)
            files = _directory(path, batch) if path.is_dir() else [path]
        except DataError as e:
            batch.tried += str(p) != "-"
            slots.append(e)
            continue
        for file in files:
            batch.tried += 1
            if file.suffix.lower() in IMAGE_SUFFIXES and not _is_stream(file):
                jobs.append((len(slots), (file, n_in, raw, thumbnails)))
                slots.append(None)
                continue
            try:
                slots.append(_file_input(file, n_in, raw, thumbnails))
            except DataError as e:
                slots.append(e)
    if len(jobs) < POOL_FROM:
        workers = 1
    elif (workers or usable_cores()) > 1:
        _preload()
    done = ordered_map(
        _file_job, [job for _, job in jobs], workers=workers, progress=progress, desc="preparing", unit="image"
    )
    for (index, _), result in zip(jobs, done):
        slots[index] = result
    for item in slots:
        if isinstance(item, DataError):
            batch.errors.append(item)
        elif item is not None:
            batch.inputs.append(item)
    return batch


POOL_FROM = 4  # image files from which a pool of processes prepares them (fewer: in this process)
_FileJob = tuple[Path, int, bool, bool]  # _file_input's arguments


def _file_job(job: _FileJob) -> Input | DataError:
    """One image file read and prepared (in a worker process): its input, or why it cannot be."""
    try:
        return _file_input(*job)
    except DataError as e:
        return e


def _preload() -> None:
    """What each worker would import for its first image, imported once before they start."""
    from PIL import Image
    from scipy import ndimage  # noqa: F401

    Image.init()  # every format's plugin


def load_inputs(paths: list[str | os.PathLike], n_in: int = SIDE * SIDE, **options: Any) -> list[Input]:
    """Each input as an :class:`Input`, following the rules of this module: :func:`read_inputs`
    (the same arguments: ``raw``, ``stdin``, ``thumbnails``, ``workers``, ``progress``), raising
    the first :class:`DataError` where it goes on past it."""
    batch = read_inputs(paths, n_in, **options)
    if batch.errors:
        raise batch.errors[0]
    return batch.inputs


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
