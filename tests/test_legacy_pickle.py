"""The safe reader for the tutorial's mnist.pkl.gz: genuine files load, anything else is refused unrun."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct

import numpy as np
import pytest

from logreg_mnist.data import load_legacy_pickle, read_legacy_pickle, safe_unpickle
from logreg_mnist.errors import DataError, UnsafePickleError


class Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 ``str`` (BINSTRING) and names numpy.core, like the real file."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_bytes(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes

    def save_global(self, obj, name=None):
        module = getattr(obj, "__module__", None)
        if module == "numpy._core.multiarray" or module == "numpy.core.multiarray":
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n" + (name or obj.__name__).encode() + b"\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)

    dispatch[type(len)] = save_global


def py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def tutorial_like(n=(30, 10, 10), seed=0):
    rng = np.random.default_rng(seed)
    return tuple(
        ((rng.integers(0, 256, size=(k, 784)) / 256).astype(np.float32), rng.integers(0, 10, size=k).astype(np.int64))
        for k in n
    )


def test_python2_style_pickle_loads_with_exact_pixels(tmp_path):
    splits = tutorial_like()
    data = py2_pickle(splits)
    assert b"numpy.core.multiarray" in data and b"_codecs" not in data
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(gzip.compress(data))
    got = read_legacy_pickle(path)
    for (x, y), (gx, gy) in zip(splits, got):
        np.testing.assert_array_equal(gx, x)
        np.testing.assert_array_equal(gy, y)
    dataset = load_legacy_pickle(path)
    np.testing.assert_array_equal(dataset.train.pixels, (splits[0][0] * 256).astype(np.uint8))
    np.testing.assert_array_equal(dataset.valid.images, splits[1][0])
    assert dataset.identity.startswith("pickle-") and len(dataset.test) == 10


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_python3_pickles_of_arrays_load(protocol):
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(safe_unpickle(pickle.dumps(arr, protocol=protocol)) if protocol > 2
                                  else safe_unpickle(py2_pickle(arr)), arr)


class _System:
    """Pickles as a call of os.system (``posix.system``) that creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    data = pickle.dumps(_System(marker), protocol=2)
    assert b"posix" in data and b"system" in data
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(gzip.compress(data))
    with pytest.raises(UnsafePickleError, match=r"refusing to load global posix\.system"):
        read_legacy_pickle(path)
    assert not marker.exists()


def test_object_array_hiding_a_call_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    arr = np.empty(2, dtype=object)
    arr[0], arr[1] = _System(marker), 1
    splits = list(tutorial_like())
    splits[1] = (splits[1][0], arr)
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(gzip.compress(pickle.dumps(tuple(splits), protocol=2)))
    with pytest.raises(UnsafePickleError, match=r"refusing"):
        read_legacy_pickle(path)
    assert not marker.exists()
    # An object array of harmless values is refused for its dtype alone.
    with pytest.raises(UnsafePickleError, match=r"dtype object"):
        safe_unpickle(py2_pickle(np.array([1, "a"], dtype=object)))


@pytest.mark.parametrize("mutate, message", [
    (lambda s: s[:2], r"expected a tuple of three \(images, labels\) splits, found a tuple of 2"),
    (lambda s: (s[0], s[1], (s[2][0][:, :100], s[2][1])), r"\[test\]: expected images of shape \(n, 784\)"),
    (lambda s: (s[0], (s[1][0] * 255, s[1][1]), s[2]), r"\[valid\]: expected pixel values in \[0, 1\]"),
    (lambda s: ((s[0][0], s[0][1] + 10), s[1], s[2]), r"\[train\]: expected labels 0-9"),
    (lambda s: ((s[0][0], s[0][1][:5]), s[1], s[2]), r"\[train\]: 30 images but 5 labels"),
    (lambda s: ((s[0][0], s[0][1].astype(np.float64)), s[1], s[2]), r"expected 1-D integer labels"),
])
def test_structure_is_checked(tmp_path, mutate, message):
    path = tmp_path / "mnist.pkl"
    path.write_bytes(pickle.dumps(mutate(tutorial_like()), protocol=2))
    with pytest.raises(DataError, match=message):
        read_legacy_pickle(path)


def test_garbage_is_a_data_error(tmp_path):
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(gzip.compress(b"not a pickle at all"))
    with pytest.raises(DataError, match=r"not a valid pickle"):
        read_legacy_pickle(path)
