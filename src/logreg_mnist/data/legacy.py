"""A safe reader for the tutorial's ``mnist.pkl.gz``.

The file is a pickled tuple ``((train_x, train_y), (valid_x, valid_y), (test_x,
test_y))`` written by Python 2, so it is loaded with ``encoding="latin1"``.
Unpickling can run arbitrary code, so this module uses an unpickler that admits
only the few callables NumPy arrays need; anything else (``posix.system``,
``builtins.eval``, an object array, ...) is refused before it is called.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError, UnsafePickleError
from .idx import GZIP_MAGIC

_FORBIDDEN_KINDS = frozenset("OV")  # object arrays and raw/structured voids


def _checked_dtype(obj, align=False, copy=False):
    dt = np.dtype(obj, align=align, copy=copy)
    if dt.kind in _FORBIDDEN_KINDS or dt.hasobject:
        raise UnsafePickleError(f"refusing an array of dtype {dt!s}: only numeric arrays are allowed")
    return dt


def _checked_reconstruct(cls, shape, typecode):
    if cls is not np.ndarray:
        raise UnsafePickleError(f"refusing to reconstruct {cls!r}: only numpy.ndarray is allowed")
    return np.ndarray.__new__(np.ndarray, shape, typecode)


def _checked_frombuffer(buffer, dtype, shape, order):
    dtype = _checked_dtype(dtype)
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order)


def _checked_encode(text, encoding="utf-8"):
    """Python 3 pickles bytes under protocol 2 as ``_codecs.encode(str, "latin1")``."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"refusing _codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin1")


# (module, name) as written in the pickle -> the object it may resolve to.
# numpy.core was renamed numpy._core in NumPy 2; Python 2 pickles name the old one.
_ALLOWED = {}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_mod, "_reconstruct")] = _checked_reconstruct
for _mod in ("numpy.core.numeric", "numpy._core.numeric"):
    _ALLOWED[(_mod, "_frombuffer")] = _checked_frombuffer
_ALLOWED[("numpy", "ndarray")] = np.ndarray
_ALLOWED[("numpy", "dtype")] = _checked_dtype
_ALLOWED[("_codecs", "encode")] = _checked_encode


class AllowlistUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals NumPy arrays need.

    ``np.ndarray.__setstate__`` is reached through the BUILD opcode on an object
    this class created, and the dtype it receives has already been checked.
    """

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load global {module}.{name}: only NumPy array "
                "reconstruction is allowed in a data pickle"
            ) from None

    def persistent_load(self, pid):
        raise UnsafePickleError(f"refusing persistent id {pid!r} in a data pickle")


def safe_unpickle(data: bytes, *, encoding: str = "latin1"):
    """Unpickle ``data`` through :class:`AllowlistUnpickler`."""
    return AllowlistUnpickler(io.BytesIO(data), encoding=encoding).load()


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
        UnsafePickleError: the pickle names anything but NumPy array construction.
        DataError: the file is unreadable or its structure is not the tutorial's.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == GZIP_MAGIC:
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    try:
        obj = safe_unpickle(raw)
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{path}: {e}") from None
    except Exception as e:  # a malformed stream can raise almost anything
        raise DataError(f"{path}: not a valid pickle: {type(e).__name__}: {e}") from None
    if not (isinstance(obj, tuple) and len(obj) == 3):
        found = f"a tuple of {len(obj)}" if isinstance(obj, tuple) else type(obj).__name__
        raise DataError(f"{path}: expected a tuple of three (images, labels) splits, found {found}")
    splits = []
    n_features = None
    for name, pair in zip(("train", "valid", "test"), obj):
        x, y = _check_split(f"{path} [{name}]", pair, n_features if n_features else 784)
        n_features = x.shape[1]
        splits.append((x, y))
    return tuple(splits)
