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
    with pytest.raises(UnsafePickleError, match=r"refusing to load global 'posix\.system'"):
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
    with pytest.raises(UnsafePickleError, match=r"dtype 'object'"):
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


# Hostile files that claim big sizes: each is refused before anything big is allocated.

class _Reconstruct:
    """Pickles as ``numpy._core.multiarray._reconstruct(ndarray, shape, dtype)`` with no data after it."""

    def __init__(self, shape, typecode="f4", cls=np.ndarray):
        self.args = (cls, shape, typecode)

    def __reduce__(self):
        return (np.ndarray.__reduce__(np.zeros(0))[0], self.args)


class _CallNdarray:
    def __reduce__(self):
        return (np.ndarray, ((600_000, 784), "f8"))


def _allocation_bomb(tmp_path, item) -> tuple:
    split = (item, _Reconstruct((600_000,), "i8"))
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(gzip.compress(pickle.dumps((split, split, split), protocol=2)))
    assert path.stat().st_size < 5_000
    return path


@pytest.mark.parametrize("item, message", [
    (_Reconstruct((600_000, 784)), r"refusing an array of shape \(600000, 784\) \(1,881,600,000 bytes\): more than"),
    (_CallNdarray(), r"refusing to call numpy.ndarray directly"),
])
def test_a_few_kilobytes_claiming_600000_rows_are_refused_before_allocating(tmp_path, item, message):
    import tracemalloc

    path = _allocation_bomb(tmp_path, item)
    tracemalloc.start()
    try:
        with pytest.raises(UnsafePickleError, match=message):
            read_legacy_pickle(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 << 20


def test_declared_lengths_beyond_the_data_are_refused_before_the_unpickler_runs():
    # BINBYTES8 claiming 1 TiB, and a memo slot 2**31 (the C unpickler sizes its memo to twice that).
    with pytest.raises(DataError, match=r"not a valid pickle: .*expected 1099511627776 bytes"):
        safe_unpickle(b"\x80\x04\x8e" + struct.pack("<Q", 1 << 40) + b"abc.")
    with pytest.raises(UnsafePickleError, match=r"refusing memo slot 2147483648"):
        safe_unpickle(b"\x80\x02K\x01r" + struct.pack("<I", 1 << 31) + b".")


def test_gzip_bomb_is_streamed_and_refused_at_the_limit(tmp_path, monkeypatch):
    import tracemalloc

    from logreg_mnist.data import legacy

    monkeypatch.setattr(legacy, "MAX_PICKLE_BYTES", 2 << 20)
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(gzip.compress(bytes(64 << 20), compresslevel=1))  # 64 MiB of zeros in ~300 KB
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"decompresses to more than 2,097,152 bytes, the limit for a data pickle"):
            read_legacy_pickle(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 12 << 20, "decompressed in chunks, stopped at the limit"
    raw = tmp_path / "mnist.pkl"
    raw.write_bytes(bytes(3 << 20))
    with pytest.raises(DataError, match=r"holds more than 2,097,152 bytes"):
        read_legacy_pickle(raw)


def test_splits_larger_than_the_bound_are_refused(tmp_path, monkeypatch):
    from logreg_mnist.data import legacy

    monkeypatch.setattr(legacy, "MAX_SPLIT_ROWS", 20)
    path = tmp_path / "mnist.pkl"
    path.write_bytes(pickle.dumps(tutorial_like(), protocol=2))
    with pytest.raises(DataError, match=r"\[train\]: expected at most 20 examples in a split, found 30"):
        read_legacy_pickle(path)


def test_names_from_the_file_are_quoted_and_cut_short(tmp_path):
    escape = "\x1b]0;owned\x07\x1b[2J"
    messages = []
    for module, name in ((escape + "os", "system"), ("m" * (16 << 20), "x")):
        data = b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n."
        path = tmp_path / "mnist.pkl.gz"
        path.write_bytes(gzip.compress(data))
        with pytest.raises(UnsafePickleError) as e:
            read_legacy_pickle(path)
        msg = str(e.value)
        assert "\x1b" not in msg and "\x07" not in msg and msg.isprintable()
        assert len(msg) < 600 and "refusing to load global '" in msg
        messages.append(msg)
    assert r"global '\x1b]0;owned\x07\x1b[2Jos.system':" in messages[0]
    assert "'mmmm" in messages[1] and "... (16,777,218 characters): only NumPy" in messages[1]
