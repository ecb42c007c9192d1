"""The decoded data cache: first read, reopen, tampered / truncated / stale caches, where it goes."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from logreg_mnist.data import load_mnist, read_idx
from logreg_mnist.data.cache import CACHE_DIR_NAME, MANIFEST, content_digest
from logreg_mnist.data.idx import idx_header

from .conftest import NAMES, write_dataset

IMAGES = "train-images-idx3-ubyte"


@pytest.fixture
def user_cache(tmp_path, monkeypatch):
    """The user cache directory, inside the test's own directory (platformdirs follows XDG)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("LOGREG_MNIST_NO_CACHE", raising=False)
    return tmp_path / "xdg" / "logreg-mnist" / "decoded"


def _load(directory):
    return load_mnist(directory, download=False, valid_size=20, progress=False)


def _same(a, b):
    for s in ("train", "valid", "test"):
        np.testing.assert_array_equal(a.split(s).pixels, b.split(s).pixels)
        np.testing.assert_array_equal(a.split(s).labels, b.split(s).labels)
    assert a.identity == b.identity


def test_first_read_writes_a_verified_cache_then_reopens_it_mapped(tmp_path, user_cache):
    write_dataset(tmp_path / "d")
    first = _load(tmp_path / "d")
    cache = tmp_path / "d" / CACHE_DIR_NAME
    assert sorted(p.name for p in cache.iterdir()) == sorted([MANIFEST, *(f"{n}.npy" for n in NAMES)])
    manifest = json.loads((cache / MANIFEST).read_text())
    raw = read_idx(tmp_path / "d" / f"{IMAGES}.gz", kind="images")
    # The recorded digest is the SHA-256 of the IDX content, recomputed from the array.
    assert manifest["arrays"][IMAGES]["sha256"] == content_digest(raw)
    assert idx_header(raw.shape) == bytes([0, 0, 8, 3]) + np.asarray(raw.shape, ">u4").tobytes()
    again = _load(tmp_path / "d")
    assert isinstance(again.train.pixels, np.memmap) and not isinstance(first.train.pixels, np.memmap)
    _same(first, again)
    assert not user_cache.exists()


@pytest.mark.parametrize("damage", ["flip_a_pixel", "truncate", "bad_header", "forged_mnist_claim"])
def test_a_damaged_cache_is_rebuilt_never_trusted(tmp_path, user_cache, damage):
    write_dataset(tmp_path / "d")
    reference = _load(tmp_path / "d")
    cache = tmp_path / "d" / CACHE_DIR_NAME
    npy = cache / f"{IMAGES}.npy"
    good = npy.read_bytes()
    data = bytearray(good)
    if damage == "flip_a_pixel":
        data[-1] ^= 0xFF
    elif damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "bad_header":
        data[:6] = b"NOTNPY"
    else:  # a manifest claiming MNIST with digests that are not MNIST's
        manifest = json.loads((cache / MANIFEST).read_text())
        manifest["mnist"] = True
        (cache / MANIFEST).write_text(json.dumps(manifest))
    npy.write_bytes(bytes(data))
    again = _load(tmp_path / "d")
    _same(reference, again)
    assert not isinstance(again.train.pixels, np.memmap)  # read from the IDX files
    assert npy.read_bytes() == good  # and the cache rebuilt
    assert json.loads((cache / MANIFEST).read_text())["mnist"] is False
    assert isinstance(_load(tmp_path / "d").train.pixels, np.memmap)


def test_a_replaced_source_file_makes_the_cache_stale(tmp_path, user_cache):
    write_dataset(tmp_path / "d", seed=0)
    first = _load(tmp_path / "d")
    write_dataset(tmp_path / "other", seed=5)
    src = tmp_path / "other" / f"{IMAGES}.gz"
    os.replace(src, tmp_path / "d" / f"{IMAGES}.gz")
    again = _load(tmp_path / "d")
    assert not np.array_equal(np.asarray(first.train.pixels), np.asarray(again.train.pixels))
    np.testing.assert_array_equal(
        np.asarray(again.train.pixels).reshape(-1, 28, 28)[:5],
        read_idx(tmp_path / "d" / f"{IMAGES}.gz", kind="images")[:5])


def test_a_read_only_data_directory_caches_in_the_user_cache(tmp_path, user_cache):
    write_dataset(tmp_path / "ro")
    os.chmod(tmp_path / "ro", stat.S_IRUSR | stat.S_IXUSR)
    try:
        first = _load(tmp_path / "ro")
        assert not (tmp_path / "ro" / CACHE_DIR_NAME).exists()
        (entry,) = user_cache.iterdir()
        assert (entry / MANIFEST).is_file()
        again = _load(tmp_path / "ro")
        assert isinstance(again.train.pixels, np.memmap)
        _same(first, again)
    finally:
        os.chmod(tmp_path / "ro", stat.S_IRWXU)


def test_failing_to_write_a_cache_is_not_an_error(tmp_path, monkeypatch):
    write_dataset(tmp_path / "ro")
    (tmp_path / "xdg").write_text("a file where the cache directory would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    os.chmod(tmp_path / "ro", stat.S_IRUSR | stat.S_IXUSR)
    try:
        data = _load(tmp_path / "ro")
        assert data.train.pixels.shape == (100, 784)
        assert not isinstance(_load(tmp_path / "ro").train.pixels, np.memmap)
    finally:
        os.chmod(tmp_path / "ro", stat.S_IRWXU)


def test_the_cache_can_be_turned_off(tmp_path, user_cache, monkeypatch):
    monkeypatch.setenv("LOGREG_MNIST_NO_CACHE", "1")
    write_dataset(tmp_path / "d")
    _load(tmp_path / "d")
    assert not (tmp_path / "d" / CACHE_DIR_NAME).exists() and not user_cache.exists()
