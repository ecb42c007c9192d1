"""Out-of-core data: a split's pixels read in chunks of rows from its uncompressed IDX file.

The chapter advises, for data too large for the device, keeping "a sufficiently small
chunk of your data (several minibatches)" resident. :class:`Rows` is that for one
split: either the whole uint8 array (resident) or a reader that copies rows
``[start, stop)`` from the file into two reused buffers with positioned reads
(``os.preadv``), so that the pages read stay in the kernel's page cache and never
count toward the process's resident set (a memory map's pages would).

Chunks come in the file's order, so training on chunks gives exactly the result of
training on the resident array. The file is checked before every read: a file that
changes size (truncated, rewritten) or ends early raises :class:`DataError`.

Sizes are bytes; :func:`parse_size` reads ``"512M"``, ``"2G"`` and the like (binary
units) for ``train --max-resident``.

Example:
    >>> rows = Rows.for_split(data.train, chunk_bytes=32 << 20)   # (n, 784) uint8 file rows
    >>> for start, pixels in rows.chunks(0, len(rows), rows.chunk_rows):
    ...     ...   # pixels: (k, 784) uint8, valid until the next chunk is read
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError, IDXFormatError

DEFAULT_RESIDENT_FRACTION = 0.25  # of the available memory: room for the OS, the page cache, other work
DEFAULT_RESIDENT_CAP = 2 << 30  # and at most this: larger data are read in chunks unless --max-resident says
MAX_CHUNK_BYTES = 32 << 20  # larger reads gain nothing measurable and only add to the resident set
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """Bytes from ``"512M"``, ``"2G"``, ``"1.5G"``, ``"800K"`` or a plain number of bytes.

    Units are binary (K = 1024); a trailing ``B``/``iB`` is accepted (``"2GiB"``).

    Raises:
        ConfigError: not a positive size.
    """
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([KMGT]?)(?:i?B)?\s*", str(text), flags=re.IGNORECASE)
    value = int(float(m.group(1)) * _UNITS[m.group(2).upper()]) if m else 0
    if value <= 0:
        raise ConfigError(f"--max-resident: expected a size such as 512M or 2G, found {text!r}")
    return value


def format_size(n: int) -> str:
    """``n`` bytes as a short text: ``"3.7 GiB"``."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def available_memory() -> int:
    """Bytes of memory available to new work (Linux ``MemAvailable``; else free pages)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def default_max_resident() -> int:
    """The default memory budget for resident data: a quarter of the available memory, at
    most 2 GiB (MNIST's splits are 55 MB; a dataset of several GiB is trained in chunks, in
    a small resident set, unless ``--max-resident`` allows more)."""
    return min(int(available_memory() * DEFAULT_RESIDENT_FRACTION), DEFAULT_RESIDENT_CAP)


class RowFile:
    """Rows of fixed size in a file, read by position into caller-owned buffers.

    Args:
        path: the file.
        offset: byte offset of row 0 in the file.
        n_rows, row_bytes: how many rows, of how many bytes each.

    The file's size is recorded when it is opened; every read checks it again.
    """

    def __init__(self, path: str | os.PathLike, offset: int, n_rows: int, row_bytes: int):
        self.path = Path(path)
        self.offset, self.n_rows, self.row_bytes = offset, n_rows, row_bytes
        try:
            self._fd = os.open(self.path, os.O_RDONLY)
        except OSError as e:
            raise DataError(f"{self.path}: cannot open for reading: {e.strerror or e}") from None
        self.size = os.fstat(self._fd).st_size
        end = offset + n_rows * row_bytes
        if self.size < end:
            raise DataError(
                f"{self.path}: expected at least {end:,} bytes ({n_rows:,} rows of {row_bytes:,} "
                f"bytes from byte {offset:,}), found {self.size:,}"
            )

    def read(self, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        """Rows ``[start, stop)`` into ``out`` (uint8, at least (stop - start, row_bytes)).

        Returns:
            The view ``out[: stop - start]``, (stop - start, row_bytes) uint8.

        Raises:
            DataError: the file changed size since it was opened, or ended early.
        """
        size = os.fstat(self._fd).st_size
        if size != self.size:
            raise DataError(
                f"{self.path}: the file changed size while it was in use: expected {self.size:,} "
                f"bytes, found {size:,} (truncated or rewritten?); restart with the file complete"
            )
        view = out[: stop - start]
        buf = view.data.cast("B")
        position, done = self.offset + start * self.row_bytes, 0
        while done < len(buf):
            n = os.preadv(self._fd, [buf[done:]], position + done)
            if n == 0:
                raise DataError(
                    f"{self.path}: the file ends at byte {position + done:,}, inside row "
                    f"{start + done // self.row_bytes:,}: expected {self.n_rows:,} rows "
                    f"({self.offset + self.n_rows * self.row_bytes:,} bytes); truncated?"
                )
            done += n
        return view

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self):
        self.close()


def file_rows(array: np.ndarray) -> RowFile | None:
    """The file rows behind ``array``, when it is a C-contiguous 2-d view of a memory map.

    ``np.memmap`` keeps ``filename`` and ``offset`` (the file offset of the mapped
    array's first byte); a view's offset follows from its distance to that array.

    Returns:
        A :class:`RowFile`, or None for an in-memory array.
    """
    if array.ndim != 2 or not array.flags.c_contiguous or array.dtype != np.uint8:
        return None
    root = array
    while isinstance(root.base, np.ndarray):
        root = root.base
    filename = getattr(root, "filename", None) if isinstance(root, np.memmap) else None
    if filename is None:
        return None
    offset = int(getattr(root, "offset", 0))
    shift = array.__array_interface__["data"][0] - root.__array_interface__["data"][0]
    return RowFile(filename, offset + shift, array.shape[0], array.shape[1])


class Rows:
    """One split's uint8 pixels, resident or read from its file in chunks.

    Args:
        pixels: (n, n_features) uint8, a memory map (streamed from its file) or an
            in-memory array (chunks are views of it).
        chunk_rows: rows per chunk; None keeps the split resident (one chunk).

    Attributes:
        chunk_rows: the largest chunk (``n`` when resident).
        chunked: whether there is more than one chunk.
        streamed: whether chunks are read from the file into reused buffers (else
            they are views of the in-memory array).
    """

    def __init__(self, pixels: np.ndarray, chunk_rows: int | None = None):
        self.n, self.n_features = pixels.shape
        self.chunk_rows = self.n if chunk_rows is None else max(1, min(chunk_rows, self.n))
        self.chunked = self.chunk_rows < self.n
        self._file = file_rows(pixels) if self.chunked else None
        self.streamed = self._file is not None
        self._pixels = None if self.streamed else pixels
        # two buffers: the next chunk is read while the current one is used
        self._buffers = [np.empty((self.chunk_rows, self.n_features), np.uint8) for _ in range(2 * self.streamed)]

    @classmethod
    def for_split(cls, split, chunk_bytes: int | None, multiple: int = 1) -> Rows:
        """Rows for ``split.pixels``; chunks of at most ``chunk_bytes`` (None: resident),
        rounded down to a ``multiple`` of rows (at least one multiple)."""
        if split.pixels is None:
            raise ConfigError(
                "expected uint8 pixels (the GPU engine and out-of-core training keep the data as "
                "uint8), found float images that are not multiples of 1/256 (a mnist.pkl.gz of "
                "other data?); use --engine numpy with a larger --max-resident"
            )
        if chunk_bytes is None:
            return cls(split.pixels)
        rows = max(1, chunk_bytes // max(1, split.n_features)) // multiple * multiple
        return cls(split.pixels, max(multiple, rows))

    def __len__(self) -> int:
        return self.n

    def chunks(self, start: int, stop: int, size: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Rows ``[start, stop)`` in order, ``size`` (<= ``chunk_rows``) at a time.

        Yields:
            (first row, pixels (k, n_features) uint8). A streamed chunk is a view of
            one of two reused buffers (the other is being filled with the next
            chunk): use it before asking for the next one.
        """
        size = min(size or self.chunk_rows, self.chunk_rows)
        starts = range(start, stop, size)
        if self._file is None:
            assert self._pixels is not None  # resident: one of the two is set in __init__
            for a in starts:
                yield a, self._pixels[a : min(a + size, stop)]
            return
        if not starts:
            return
        file = self._file
        # One reader thread fills one buffer while the caller uses the other (the reads
        # release the GIL), so reading from a cold disk overlaps with training.
        with ThreadPoolExecutor(1, thread_name_prefix="logreg-mnist-read") as reader:

            def read(k: int):
                return reader.submit(file.read, starts[k], min(starts[k] + size, stop), self._buffers[k % 2])

            pending = read(0)
            for k, a in enumerate(starts):
                pixels = pending.result()  # raises the reader's DataError, if any
                if k + 1 < len(starts):
                    pending = read(k + 1)
                yield a, pixels

    def read(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Rows ``[start, stop)``, (stop - start, n_features) uint8: a view of the in-memory
        array, or read from the file into ``out`` (uint8, at least that many rows; None: a
        new array). For callers that schedule their own reads (one chunk at a time).

        Raises:
            DataError: the file changed size since it was opened, or ended early.
        """
        if self._file is None:
            assert self._pixels is not None  # resident: one of the two is set in __init__
            return self._pixels[start:stop]
        if out is None:
            out = np.empty((stop - start, self.n_features), np.uint8)
        return self._file.read(start, stop, out)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def resident_bytes(data, bytes_per_value: int) -> int:
    """Bytes an engine holds when every split of ``data`` is resident at that value size."""
    return sum(len(data.split(s)) for s in ("train", "valid", "test")) * data.n_features * bytes_per_value


def chunk_bytes_for(data, max_resident: int | None, bytes_per_value: int) -> int | None:
    """The uint8 bytes per chunk for ``data`` under ``max_resident``, or None when it fits.

    When streaming, each of the three splits has two buffers (one read while the other
    is used); the six stay within the budget, and none is larger than
    :data:`MAX_CHUNK_BYTES`.
    """
    budget = default_max_resident() if max_resident is None else max_resident
    if resident_bytes(data, bytes_per_value) <= budget:
        return None
    return max(1, min(budget // 6, MAX_CHUNK_BYTES))


# --- gzip files too large to decompress in memory ------------------------------------------------


def decompressed_copy(path: str | os.PathLike, cache_dir: str | os.PathLike, *, progress: bool = True) -> Path:
    """An uncompressed copy of the gzip file ``path`` in ``cache_dir``, made once.

    The copy is named after the file's name, size and modification time, written
    under a temporary name and renamed; later calls find it and return at once.

    Raises:
        IDXFormatError: the gzip stream is corrupt or truncated.
    """
    import gzip

    from tqdm.auto import tqdm

    path = Path(path)
    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:16]
    name = path.name[:-3] if path.name.endswith(".gz") else path.name + ".raw"
    target = Path(cache_dir) / f"{key}-{name}"
    if target.is_file():
        return target
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with (
            open(path, "rb") as raw,
            gzip.open(raw, "rb") as src,
            open(tmp, "wb") as dst,
            tqdm(
                total=st.st_size,
                unit="B",
                unit_scale=True,
                disable=not progress,
                leave=False,
                desc=f"decompressing {path.name}",
            ) as bar,
        ):
            while chunk := src.read(MAX_CHUNK_BYTES):
                dst.write(chunk)
                bar.update(raw.tell() - bar.n)
        os.replace(tmp, target)
    except (OSError, EOFError, zlib.error) as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename is not None and not isinstance(e, gzip.BadGzipFile):
            raise DataError(f"{target}: cannot write the decompressed copy: {e.strerror or e}") from None
        raise IDXFormatError(f"{path}: corrupt gzip stream: {e}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    shutil.copystat(path, target, follow_symlinks=True)
    return target
