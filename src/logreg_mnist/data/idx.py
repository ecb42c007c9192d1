"""A strict reader for IDX files, gzip-compressed or raw.

The IDX format (used by MNIST and its relatives) is a 4-byte magic number,
``0x00 0x00 <type code> <number of dimensions>``, then one big-endian uint32 per
dimension, then the values in C order, big-endian.

Everything that can be checked is checked before anything is allocated: the
magic, the type code, the dimensions, and that the payload in the file is exactly
as long as the header promises. Raw files are memory-mapped; gzip files are told
apart by their first two bytes (not by the name) and decompressed into a buffer
whose size is bounded by what the compressed file can possibly hold.

Example:
    >>> images = read_idx("train-images-idx3-ubyte.gz", kind="images")
    >>> images.shape, images.dtype
    ((60000, 28, 28), dtype('uint8'))
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from ..errors import IDXFormatError

GZIP_MAGIC = b"\x1f\x8b"

# IDX type code -> element dtype (big-endian, as stored).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# What a file of each kind must look like: (type code, number of dimensions).
KINDS: dict[str, tuple[int, int]] = {
    "images": (0x08, 3),
    "labels": (0x08, 1),
}

# DEFLATE cannot expand data by more than about 1032:1, so a gzip file of S bytes
# holds at most this many times S bytes; a header promising more is a lie.
MAX_DEFLATE_RATIO = 1032

_CHUNK = 1 << 20


def _describe_magic(magic: bytes) -> str:
    if magic[:2] == GZIP_MAGIC:
        return "a gzip header (a file compressed twice?)"
    if len(magic) == 4 and magic[:2] == b"\0\0":
        ndim = magic[3]
        guess = {1: "a labels file?", 3: "an images file?"}.get(ndim, "")
        return f"{ndim} dimension{'s' if ndim != 1 else ''}" + (f": {guess}" if guess else "")
    return "not an IDX file"


def _read_exact(stream: BinaryIO | gzip.GzipFile, n: int, path: Path, what: str) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise IDXFormatError(f"{path}: file ends inside the {what}: expected {n} bytes, found {len(data)}")
    return data


def _parse_header(
    stream: BinaryIO | gzip.GzipFile, path: Path, kind: str | None
) -> tuple[np.dtype, tuple[int, ...], bytes]:
    """Read and check the magic and dimensions. Returns (dtype, shape, header bytes)."""
    magic = _read_exact(stream, 4, path, "IDX magic number")
    if kind is not None:
        code, ndim = KINDS[kind]
        want = bytes([0, 0, code, ndim])
        if magic != want:
            raise IDXFormatError(
                f"{path}: expected IDX magic 0x{want.hex()} for {kind} "
                f"(unsigned bytes, {ndim} dimension{'s' if ndim != 1 else ''}), "
                f"found 0x{magic.hex()} ({_describe_magic(magic)})"
            )
    else:
        if magic[:2] != b"\0\0":
            raise IDXFormatError(
                f"{path}: expected IDX magic starting with two zero bytes, "
                f"found 0x{magic.hex()} ({_describe_magic(magic)})"
            )
        if magic[2] not in IDX_DTYPES:
            known = ", ".join(f"0x{c:02x}" for c in IDX_DTYPES)
            raise IDXFormatError(f"{path}: expected an IDX type code in ({known}), found 0x{magic[2]:02x}")
        if magic[3] == 0:
            raise IDXFormatError(f"{path}: expected at least 1 dimension, found 0")
    ndim = magic[3]
    dims_bytes = _read_exact(stream, 4 * ndim, path, f"header ({ndim} dimensions)")
    shape = tuple(int(d) for d in np.frombuffer(dims_bytes, dtype=">u4"))
    dtype = IDX_DTYPES[magic[2]]
    # NumPy refuses a shape whose extent overflows its index type, even with a zero in it.
    if math.prod(d for d in shape if d) * dtype.itemsize > np.iinfo(np.intp).max:
        raise IDXFormatError(f"{path}: header promises dimensions {_shape_text(shape)}, too large for any array")
    return dtype, shape, magic + dims_bytes


def _promised_bytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    return math.prod(shape) * dtype.itemsize


def _shape_text(shape: tuple[int, ...]) -> str:
    return " x ".join(f"{d:,}" for d in shape)


def is_gzip(path: str | os.PathLike) -> bool:
    """Whether the file starts with the gzip magic bytes."""
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def read_idx(path: str | os.PathLike, *, kind: str | None = None) -> np.ndarray:
    """Read an IDX file, raw or gzip-compressed.

    Args:
        path: the file. Compression is detected from the first bytes.
        kind: ``"images"`` (uint8, 3 dimensions) or ``"labels"`` (uint8, 1 dimension)
            to insist on that layout, or None to accept any valid IDX file.

    Returns:
        An array of the header's shape, in native byte order for multi-byte types.
        Raw files give a read-only ``np.memmap``; gzip files an in-memory array.

    Raises:
        IDXFormatError: the file is missing, not IDX, not of the expected kind, or
            its payload length differs from what the header promises.
    """
    array, _ = read_idx_with_digest(path, kind=kind, digest=False)
    return array


def read_idx_with_digest(
    path: str | os.PathLike, *, kind: str | None = None, digest: bool = True
) -> tuple[np.ndarray, str | None]:
    """Like :func:`read_idx`, and also the SHA-256 of the decompressed content."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)} or None, got {kind!r}")
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            compressed = f.read(2) == GZIP_MAGIC
    except OSError as e:
        raise IDXFormatError(f"{path}: cannot read: {e.strerror or e}") from None
    if compressed:
        return _read_gzip(path, size, kind, digest)
    return _read_raw(path, size, kind, digest)


def _read_raw(path: Path, size: int, kind: str | None, digest: bool) -> tuple[np.ndarray, str | None]:
    with open(path, "rb") as f:
        dtype, shape, header = _parse_header(f, path, kind)
    promised = _promised_bytes(shape, dtype)
    found = size - len(header)
    if found != promised:
        raise IDXFormatError(
            f"{path}: header promises {_shape_text(shape)} values of {dtype.itemsize} byte(s) "
            f"= {promised:,} bytes of data, found {found:,}"
        )
    if promised == 0:
        array = np.zeros(shape, dtype=dtype.newbyteorder("="))
    else:
        array = np.memmap(path, dtype=dtype, mode="r", offset=len(header), shape=shape)
        if dtype.itemsize > 1:
            array = array.astype(dtype.newbyteorder("="))
    hexdigest = file_sha256(path) if digest else None  # one pass costs max(read, hash), not their sum
    return array, hexdigest


def _read_gzip(path: Path, size: int, kind: str | None, digest: bool) -> tuple[np.ndarray, str | None]:
    try:
        with gzip.open(path, "rb") as f:
            dtype, shape, header = _parse_header(f, path, kind)
            promised = _promised_bytes(shape, dtype)
            if promised > size * MAX_DEFLATE_RATIO:
                raise IDXFormatError(
                    f"{path}: header promises {_shape_text(shape)} values = {promised:,} bytes, "
                    f"but a gzip file of {size:,} bytes can hold at most "
                    f"{size * MAX_DEFLATE_RATIO:,}"
                )
            buf = bytearray(promised)
            view = memoryview(buf)
            got = 0
            while got < promised:
                n = f.readinto(view[got : got + _CHUNK])
                if not n:
                    break
                got += n
            extra = f.read(1)
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        raise IDXFormatError(f"{path}: corrupt gzip stream: {e}") from None
    if got != promised or extra:
        found = f"{got:,}" if not extra else f"more than {promised:,}"
        raise IDXFormatError(
            f"{path}: header promises {_shape_text(shape)} values of {dtype.itemsize} byte(s) "
            f"= {promised:,} bytes of data, found {found}"
        )
    hexdigest = hashlib.sha256(header + buf).hexdigest() if digest else None
    array = np.frombuffer(buf, dtype=dtype).reshape(shape)
    if dtype.itemsize > 1:
        array = array.astype(dtype.newbyteorder("="))
    return array, hexdigest


def content_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's content, decompressed first when it is gzip.

    Raises:
        IDXFormatError: the file is gzip but corrupt (bad CRC, truncated stream).
    """
    path = Path(path)
    h = hashlib.sha256()
    try:
        opener = gzip.open if is_gzip(path) else open
        with opener(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    except (OSError, EOFError, zlib.error) as e:
        raise IDXFormatError(f"{path}: corrupt gzip stream: {e}") from None
    return h.hexdigest()


def file_sha256(path: str | os.PathLike, chunk: int = 8 << 20) -> str:
    """SHA-256 of a file's bytes, the next chunk read while the current one is hashed.

    Reads and hashing both release the GIL, so one pass over a large file takes about
    the longer of reading it and hashing it, not their sum.
    """
    h = hashlib.sha256()
    buffers = [bytearray(chunk), bytearray(chunk)]
    with open(path, "rb", buffering=0) as f, ThreadPoolExecutor(1, thread_name_prefix="logreg-mnist-hash") as reader:
        k = 0
        pending = reader.submit(f.readinto, buffers[0])
        while n := pending.result():
            current, k = buffers[k], k ^ 1
            pending = reader.submit(f.readinto, buffers[k])
            h.update(memoryview(current)[:n])
    return h.hexdigest()


def stream_digest(path: str | os.PathLike, limit: int) -> str | None:
    """SHA-256 of a file's IDX content (gzip decompressed on the fly, nothing kept in memory).

    Returns None when the file cannot be read, its gzip stream is corrupt, or its content
    is longer than ``limit`` bytes (then it is not the content sought, and reading stops).
    """
    h = hashlib.sha256()
    n = 0
    try:
        with open(path, "rb") as raw:
            compressed = raw.read(2) == GZIP_MAGIC
            raw.seek(0)
            with gzip.open(raw, "rb") if compressed else raw as f:
                while chunk := f.read(min(1 << 20, limit + 1 - n)):
                    n += len(chunk)
                    if n > limit:
                        return None
                    h.update(chunk)
    except (OSError, EOFError, zlib.error):
        return None
    return h.hexdigest()


def idx_payload_bytes(path: str | os.PathLike) -> int:
    """Bytes of data a gzip-compressed IDX file promises in its header; 0 for a raw file or
    one whose header cannot be read (the IDX reader then reports what is wrong)."""
    try:
        if not is_gzip(path):
            return 0
        with gzip.open(path, "rb") as f:
            dtype, shape, _ = _parse_header(f, Path(path), None)
    except (OSError, EOFError, zlib.error, IDXFormatError):
        return 0
    return _promised_bytes(shape, dtype)


def idx_header(shape: tuple[int, ...], dtype: npt.DTypeLike = np.uint8) -> bytes:
    """The IDX header of an array of ``shape`` and ``dtype`` (any byte order): the magic
    ``00 00 <type code> <number of dimensions>``, then one big-endian uint32 per dimension.

    Raises:
        ValueError: IDX has no type code for ``dtype``.
    """
    codes = {v.newbyteorder("="): k for k, v in IDX_DTYPES.items()}
    native = np.dtype(dtype).newbyteorder("=")
    if native not in codes:
        raise ValueError(f"IDX cannot store dtype {dtype}; use one of {sorted(map(str, codes))}")
    return bytes([0, 0, codes[native], len(shape)]) + np.asarray(shape, dtype=">u4").tobytes()


def write_idx(path: str | os.PathLike, array: np.ndarray, *, compress: bool = False) -> None:
    """Write ``array`` as an IDX file (gzip-compressed when ``compress``).

    Used by the tests and by anyone making an MNIST-like directory of their own.
    """
    array = np.asarray(array)
    header = idx_header(array.shape, array.dtype)
    data = header + np.ascontiguousarray(array, dtype=IDX_DTYPES[header[2]]).tobytes()
    opener = gzip.open if compress else open
    with opener(path, "wb") as f:
        f.write(data)
