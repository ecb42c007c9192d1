"""The IDX reader: formats, every header check, and property-based robustness."""

from __future__ import annotations

import gzip
import hashlib
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logreg_mnist.data import read_idx, write_idx
from logreg_mnist.data.idx import file_sha256, read_idx_with_digest
from logreg_mnist.errors import IDXFormatError


def test_raw_and_gzip_give_the_same_array_whatever_the_name(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", images)  # raw content despite the .gz name
    write_idx(tmp_path / "b", images, compress=True)  # gzip content without the suffix
    raw, packed = read_idx(tmp_path / "a.gz", kind="images"), read_idx(tmp_path / "b", kind="images")
    np.testing.assert_array_equal(raw, images)
    np.testing.assert_array_equal(packed, images)
    assert isinstance(raw, np.memmap), "raw files are memory-mapped"
    assert not isinstance(packed, np.memmap)


@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", ">i4", ">f4", ">f8"])
def test_every_idx_type_round_trips_in_native_order(tmp_path, dtype):
    arr = (np.arange(12).reshape(3, 4) - 5).astype(np.dtype(dtype).newbyteorder("=")) if dtype != "u1" \
        else np.arange(12, dtype=np.uint8).reshape(3, 4)
    for compress in (False, True):
        write_idx(tmp_path / "x", arr, compress=compress)
        got = read_idx(tmp_path / "x")
        assert got.dtype.isnative
        np.testing.assert_array_equal(got, arr)


def test_labels_file_given_as_images_names_both(tmp_path):
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(5, np.uint8))
    with pytest.raises(IDXFormatError) as e:
        read_idx(tmp_path / "train-labels-idx1-ubyte", kind="images")
    msg = str(e.value)
    assert "train-labels-idx1-ubyte" in msg
    assert "expected IDX magic 0x00000803 for images" in msg
    assert "found 0x00000801" in msg and "a labels file?" in msg


def test_images_file_given_as_labels(tmp_path):
    write_idx(tmp_path / "imgs", np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(IDXFormatError, match=r"expected IDX magic 0x00000801 for labels.*found 0x00000803.*an images file\?"):
        read_idx(tmp_path / "imgs", kind="labels")


def test_gzip_compressed_twice_is_named(tmp_path):
    write_idx(tmp_path / "once.gz", np.zeros((2, 28, 28), np.uint8), compress=True)
    (tmp_path / "twice.gz").write_bytes(gzip.compress((tmp_path / "once.gz").read_bytes()))
    with pytest.raises(IDXFormatError, match=r"twice\.gz: expected IDX magic .* found 0x1f8b.*gzip header"):
        read_idx(tmp_path / "twice.gz", kind="images")


def test_header_claiming_4_billion_images_in_100_bytes(tmp_path):
    header = bytes([0, 0, 8, 3]) + np.array([4_000_000_000, 28, 28], ">u4").tobytes()
    path = tmp_path / "liar"
    path.write_bytes(header + b"\0" * (100 - len(header)))
    tracemalloc.start()
    try:
        with pytest.raises(IDXFormatError, match=r"liar: header promises 4,000,000,000 x 28 x 28 .* found 84"):
            read_idx(path, kind="images")
        assert tracemalloc.get_traced_memory()[1] < 10_000_000
    finally:
        tracemalloc.stop()
    path.write_bytes(gzip.compress(header + b"\0" * 84))
    with pytest.raises(IDXFormatError, match=r"can hold at most"):
        read_idx(path, kind="images")


@pytest.mark.parametrize("compress", [False, True])
def test_payload_shorter_or_longer_than_promised(tmp_path, compress):
    good = bytes([0, 0, 8, 1]) + np.array([10], ">u4").tobytes() + bytes(10)
    for data, found in ((good[:-3], "found 7"), (good + b"\x01", "found more than 10" if compress else "found 11")):
        path = tmp_path / "lbl"
        path.write_bytes(gzip.compress(data) if compress else data)
        with pytest.raises(IDXFormatError, match=f"promises 10 values .* = 10 bytes of data, {found}"):
            read_idx(path, kind="labels")


def test_truncated_header_and_bad_type_code(tmp_path):
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(IDXFormatError, match=r"file ends inside the header \(3 dimensions\): expected 12 bytes, found 2"):
        read_idx(tmp_path / "short")
    (tmp_path / "code").write_bytes(bytes([0, 0, 0x42, 1]) + bytes(4))
    with pytest.raises(IDXFormatError, match=r"expected an IDX type code in .* found 0x42"):
        read_idx(tmp_path / "code")
    (tmp_path / "png").write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(IDXFormatError, match=r"png: expected IDX magic starting with two zero bytes, found 0x89504e47"):
        read_idx(tmp_path / "png")


@pytest.mark.parametrize("compress", [False, True])
def test_empty_array_with_overflowing_dimensions(tmp_path, compress):
    # Found by the property test: a zero dimension makes the payload empty, but NumPy
    # still refuses a shape whose other dimensions overflow.
    data = bytes([0, 0, 8, 4]) + np.array([0, 2**21, 2**21, 2**21], ">u4").tobytes()
    (tmp_path / "x").write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(IDXFormatError, match=r"dimensions 0 x 2,097,152 x 2,097,152 x 2,097,152, too large"):
        read_idx(tmp_path / "x")
    ok = bytes([0, 0, 8, 2]) + np.array([0, 28], ">u4").tobytes()
    (tmp_path / "y").write_bytes(gzip.compress(ok) if compress else ok)
    assert read_idx(tmp_path / "y").shape == (0, 28)


def test_corrupt_gzip_and_missing_file(tmp_path):
    write_idx(tmp_path / "x.gz", np.arange(100, dtype=np.uint8), compress=True)
    data = bytearray((tmp_path / "x.gz").read_bytes())
    data[-6] ^= 0x01  # flip a bit of the CRC
    (tmp_path / "x.gz").write_bytes(bytes(data))
    with pytest.raises(IDXFormatError, match=r"x\.gz: corrupt gzip stream"):
        read_idx(tmp_path / "x.gz")
    with pytest.raises(IDXFormatError, match=r"nothing-here: cannot read"):
        read_idx(tmp_path / "nothing-here")


def test_digest_is_of_the_decompressed_content(tmp_path):
    import hashlib

    write_idx(tmp_path / "raw", np.arange(50, dtype=np.uint8))
    write_idx(tmp_path / "packed", np.arange(50, dtype=np.uint8), compress=True)
    want = hashlib.sha256((tmp_path / "raw").read_bytes()).hexdigest()
    assert read_idx_with_digest(tmp_path / "raw")[1] == want
    assert read_idx_with_digest(tmp_path / "packed")[1] == want


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(
    st.binary(max_size=64),
    # Mostly-valid headers with arbitrary dimensions and payloads.
    st.builds(lambda code, dims, payload: bytes([0, 0, code, len(dims)]) + np.array(dims, ">u4").tobytes() + payload,
              st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x07]),
              st.lists(st.integers(0, 2**32 - 1) | st.integers(0, 6), min_size=0, max_size=4),
              st.binary(max_size=64)),
), compress=st.booleans(), kind=st.sampled_from([None, "images", "labels"]))
def test_any_bytes_give_an_array_or_our_error_never_a_huge_allocation(tmp_path, data, compress, kind):
    path = tmp_path / "fuzz"
    path.write_bytes(gzip.compress(data) if compress else data)
    tracemalloc.start()
    try:
        try:
            arr = read_idx(path, kind=kind)
        except IDXFormatError:
            pass
        else:
            assert arr.size * arr.itemsize <= len(data)
            del arr
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000, f"peak allocation {peak} bytes for a {len(data)}-byte input"


@pytest.mark.parametrize("size", [0, 1, 1000, 3 * 1024 + 7])
def test_file_sha256_reading_ahead_is_the_plain_sha256(tmp_path, size):
    path = tmp_path / "bytes"
    path.write_bytes(np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes())
    assert file_sha256(path, chunk=1024) == hashlib.sha256(path.read_bytes()).hexdigest()
