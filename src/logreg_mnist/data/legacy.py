"""A safe reader for the tutorial's ``mnist.pkl.gz``, and its splits as a :class:`~.dataset.Dataset`.

The file is a pickled tuple ``((train_x, train_y), (valid_x, valid_y), (test_x,
test_y))`` written by Python 2, so it is loaded with ``encoding="latin1"``.
Unpickling can run arbitrary code, so this module uses an unpickler that admits
only the few callables NumPy arrays need; anything else (``posix.system``,
``builtins.eval``, an object array, ...) is refused before it is called.

Memory is bounded before anything is allocated:

* the file is decompressed in chunks and refused once it passes
  :data:`MAX_PICKLE_BYTES` (512 MiB; the tutorial's file is 220 MB decompressed);
* every length the pickle declares (a string, a memo slot) is checked against the
  data actually there before the unpickler runs;
* every array shape it declares counts against the decompressed size, so a few
  kilobytes cannot ask for gigabytes;
* a split holds at most :data:`MAX_SPLIT_ROWS` examples.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import pickle
import pickletools
import zlib
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, UnsafePickleError, safe_text, show_path
from .dataset import Dataset, Split
from .idx import GZIP_MAGIC
from .pixels import PIXEL_SCALE, SIDE

MAX_PICKLE_BYTES = 512 << 20  # decompressed; the tutorial's mnist.pkl is 220 MB (70,000 x 784 float32)
MAX_SPLIT_ROWS = 250_000  # examples in one split; MNIST's largest has 50,000

_ALLOWED_KINDS = frozenset("biuf")  # bool, signed and unsigned integers, floats
_CHUNK = 1 << 20
_MEMO_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})


class _Budget:
    """Bytes that the arrays a pickle declares may still take: its own decompressed size."""

    def __init__(self, limit: int):
        self.left = limit

    def take(self, shape, dtype: np.dtype) -> None:
        try:
            dims = tuple(int(d) for d in shape)
        except TypeError:
            dims = (int(shape),)
        if any(d < 0 for d in dims):
            raise UnsafePickleError(f"refusing an array of shape {dims}: negative dimension")
        nbytes = math.prod(dims) * dtype.itemsize
        if nbytes > self.left:
            raise UnsafePickleError(
                f"refusing an array of shape {dims} ({nbytes:,} bytes): more than the "
                f"{self.left:,} bytes of data left in the pickle"
            )
        self.left -= nbytes


def _checked_dtype(obj, align=False, copy=False):
    dt = np.dtype(obj, align=align, copy=copy)
    if dt.kind not in _ALLOWED_KINDS or dt.hasobject or dt.subdtype is not None:
        raise UnsafePickleError(
            f"refusing an array of dtype {safe_text(dt)}: only bool, integer and float arrays are allowed"
        )
    return dt


class _NdarrayToken:
    """What ``numpy.ndarray`` resolves to: accepted as ``_reconstruct``'s first argument,
    never callable (``ndarray(shape, dtype)`` would allocate whatever the pickle asks)."""

    def __call__(self, *args, **kwargs):
        raise UnsafePickleError("refusing to call numpy.ndarray directly in a data pickle")

    def __reduce__(self):  # pragma: no cover - never pickled
        raise TypeError("not picklable")


_NDARRAY = _NdarrayToken()


def _checked_reconstruct(cls, shape, typecode, *, budget: _Budget):
    if cls is not _NDARRAY:
        raise UnsafePickleError(f"refusing to reconstruct {safe_text(repr(cls))}: only numpy.ndarray is allowed")
    dtype = _checked_dtype(typecode)
    budget.take(shape, dtype)
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _checked_frombuffer(buffer, dtype, shape, order, *, budget: _Budget):
    dtype = _checked_dtype(dtype)
    budget.take(shape, dtype)
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order)


def _checked_encode(text, encoding="utf-8"):
    """Python 3 pickles bytes under protocol 2 as ``_codecs.encode(str, "latin1")``."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"refusing _codecs.encode({type(text).__name__}, {safe_text(encoding)})")
    return text.encode("latin1")


# (module, name) as written in the pickle -> the object it may resolve to.
# numpy.core was renamed numpy._core in NumPy 2; Python 2 pickles name the old one.
_ALLOWED: dict[tuple[str, str], Callable[..., Any]] = {}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_mod, "_reconstruct")] = _checked_reconstruct
for _mod in ("numpy.core.numeric", "numpy._core.numeric"):
    _ALLOWED[(_mod, "_frombuffer")] = _checked_frombuffer
_ALLOWED[("numpy", "ndarray")] = _NDARRAY
_ALLOWED[("numpy", "dtype")] = _checked_dtype
_ALLOWED[("_codecs", "encode")] = _checked_encode
_NEEDS_BUDGET = (_checked_reconstruct, _checked_frombuffer)


class AllowlistUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals NumPy arrays need.

    ``np.ndarray.__setstate__`` is reached through the BUILD opcode on an object
    this class created; the dtype it receives has already been checked, and NumPy
    checks that the raw data it is given fills the declared shape exactly. The
    shapes that ``_reconstruct`` and ``_frombuffer`` are asked for count against
    ``budget`` bytes (by default the pickle's own length).
    """

    def __init__(self, file, *, budget: int, **kwargs):
        super().__init__(file, **kwargs)
        self._budget = _Budget(budget)

    def find_class(self, module: str, name: str):
        found = _ALLOWED.get((module, name))
        if found is None:
            raise UnsafePickleError(
                f"refusing to load global {safe_text(f'{module}.{name}')}: only NumPy array "
                "reconstruction is allowed in a data pickle"
            )
        if found in _NEEDS_BUDGET:
            return partial(found, budget=self._budget)
        return found

    def persistent_load(self, pid):
        raise UnsafePickleError(f"refusing persistent id {safe_text(repr(pid))} in a data pickle")


def _check_declared_sizes(data: bytes) -> None:
    """Walk the opcodes: every counted string must be there, every memo slot in range.

    The C unpickler allocates a string's declared length before reading it, and a
    memo slot's index before storing it; a few bytes could ask for gigabytes.
    :mod:`pickletools` reads each argument from what is actually there.
    """
    for n_ops, (op, arg, pos) in enumerate(pickletools.genops(io.BytesIO(data)), start=1):
        if op.name in _MEMO_PUTS and not (isinstance(arg, int) and 0 <= arg < n_ops):
            slot = arg if isinstance(arg, int) else safe_text(repr(arg))
            raise UnsafePickleError(
                f"refusing memo slot {slot} at byte {pos}: a pickle of {n_ops:,} "
                "opcodes so far numbers its memo below that"
            )


def safe_unpickle(data: bytes, *, encoding: str = "latin1", budget: int | None = None):
    """Unpickle ``data`` through :class:`AllowlistUnpickler`.

    Args:
        data: the pickle. Its declared lengths are checked first (see
            :func:`_check_declared_sizes`).
        budget: bytes the arrays it declares may take in all (default: ``len(data)``).

    Raises:
        UnsafePickleError: a global outside the allowlist, or a declared size beyond the data.
        DataError: the data is not a complete pickle.
    """
    try:
        _check_declared_sizes(data)
    except UnsafePickleError:
        raise
    except Exception as e:  # noqa: BLE001 -- pickletools raises ValueError for a truncated or unknown opcode
        raise DataError(f"not a valid pickle: {safe_text(f'{type(e).__name__}: {e}')}") from None
    unpickler = AllowlistUnpickler(io.BytesIO(data), budget=len(data) if budget is None else budget, encoding=encoding)
    return unpickler.load()


def _read_capped(path: Path) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic, at most MAX_PICKLE_BYTES."""
    limit = MAX_PICKLE_BYTES
    too_big = (
        f"{show_path(path)}: decompresses to more than {limit:,} bytes, the limit for a data pickle "
        f"(the tutorial's mnist.pkl is 220 MB)"
    )
    try:
        with open(path, "rb") as f:
            compressed = f.read(2) == GZIP_MAGIC
        if not compressed:
            if path.stat().st_size > limit:
                raise DataError(too_big.replace("decompresses to", "holds"))
            return path.read_bytes()
        out = bytearray()
        with gzip.open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                out += chunk
                if len(out) > limit:
                    raise DataError(too_big)
        return bytes(out)
    except MemoryError:
        raise DataError(f"{show_path(path)}: not enough memory to read it") from None
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{show_path(path)}: cannot read: {safe_text(getattr(e, 'strerror', None) or e)}") from None


def _check_split(name: str, pair, n_features: int | None) -> tuple[np.ndarray, np.ndarray]:
    if not (isinstance(pair, tuple) and len(pair) == 2):
        raise DataError(f"{name}: expected an (images, labels) pair, found {type(pair).__name__}")
    x, y = pair
    if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray)):
        raise DataError(f"{name}: expected two NumPy arrays, found {type(x).__name__}, {type(y).__name__}")
    if x.ndim != 2 or (n_features is not None and x.shape[1] != n_features):
        raise DataError(f"{name}: expected images of shape (n, {n_features or 784}), found {x.shape}")
    if x.dtype.kind != "f":
        raise DataError(f"{name}: expected float images, found dtype {x.dtype}")
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DataError(f"{name}: expected 1-D integer labels, found shape {y.shape}, dtype {y.dtype}")
    if len(x) != len(y):
        raise DataError(f"{name}: {len(x):,} images but {len(y):,} labels")
    if len(x) > MAX_SPLIT_ROWS:
        raise DataError(f"{name}: expected at most {MAX_SPLIT_ROWS:,} examples in a split, found {len(x):,}")
    if x.size and not (np.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.0):
        raise DataError(f"{name}: expected pixel values in [0, 1], found [{x.min()}, {x.max()}]")
    if y.size and (y.min() < 0 or y.max() > 9):
        raise DataError(f"{name}: expected labels 0-9, found [{y.min()}, {y.max()}]")
    return x, y


def read_legacy_pickle(path: str | os.PathLike):
    """Read the tutorial's ``mnist.pkl.gz`` (or an uncompressed ``mnist.pkl``).

    Returns:
        ``((train_x, train_y), (valid_x, valid_y), (test_x, test_y))``: float
        arrays of shape (n, 784) with values in [0, 1], integer labels 0-9.

    Raises:
        UnsafePickleError: the pickle names anything but NumPy array construction, or
            declares a size beyond its data.
        DataError: the file is unreadable, decompresses to more than
            :data:`MAX_PICKLE_BYTES`, or its structure is not the tutorial's.
    """
    path = Path(path)
    raw = _read_capped(path)
    try:
        obj = safe_unpickle(raw)
    except DataError as e:  # UnsafePickleError included: say which file
        raise type(e)(f"{show_path(path)}: {e}") from None
    except MemoryError:
        raise DataError(f"{show_path(path)}: not enough memory to load its {len(raw):,} bytes of arrays") from None
    except Exception as e:  # noqa: BLE001 -- a malformed stream can raise almost anything
        raise DataError(f"{show_path(path)}: not a valid pickle: {safe_text(f'{type(e).__name__}: {e}')}") from None
    if not (isinstance(obj, tuple) and len(obj) == 3):
        found = f"a tuple of {len(obj)}" if isinstance(obj, tuple) else type(obj).__name__
        raise DataError(f"{show_path(path)}: expected a tuple of three (images, labels) splits, found {found}")
    splits = []
    n_features = None
    for name, pair in zip(("train", "valid", "test"), obj):
        x, y = _check_split(f"{show_path(path)} [{name}]", pair, n_features if n_features else SIDE * SIDE)
        n_features = x.shape[1]
        splits.append((x, y))
    return tuple(splits)


def load_legacy_pickle(path: str | os.PathLike) -> Dataset:
    """The tutorial's ``mnist.pkl.gz``, read safely (:func:`read_legacy_pickle`), as a :class:`Dataset`.

    Splits whose float pixels are all multiples of 1/256 keep them as uint8 ``pixels``;
    others keep their float32 images. The identity is ``"pickle-<16 hex digits>"``, a
    fingerprint of the images and labels.
    """
    path = Path(path)
    splits = read_legacy_pickle(path)
    out = []
    for x, y in splits:
        scaled = x.astype(np.float64) / PIXEL_SCALE  # back to 0-255 levels, exactly
        if np.array_equal(scaled, np.round(scaled)) and scaled.max(initial=0) <= 255:
            out.append(Split(labels=y.astype(np.int64), pixels=scaled.astype(np.uint8)))
        else:
            out.append(Split(labels=y.astype(np.int64), _images=x.astype(np.float32)))
    fingerprint = hashlib.sha256()
    for s in out:
        fingerprint.update(np.ascontiguousarray(s.images).tobytes())
        fingerprint.update(s.labels.tobytes())
    train, valid, test = out
    return Dataset(train, valid, test, source=path, identity=f"pickle-{fingerprint.hexdigest()[:16]}")
