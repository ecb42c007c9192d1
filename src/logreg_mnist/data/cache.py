"""A decoded data cache: the IDX arrays as uint8 ``.npy`` files, memory-mapped on open.

Reading MNIST from its gzip files means decompressing and hashing 55 MB every
time. After the first verified read, the decoded arrays are kept as ``.npy``
files with a small manifest; later opens memory-map them instead.

Where: a ``.logreg-mnist-cache`` directory beside the data when that directory is
writable (its permission bits say so, for root too), otherwise the user cache
directory (``~/.cache/logreg-mnist/decoded/<key>`` on Linux), keyed by the data
directory's resolved path and the identity of its files (names, sizes,
modification times). Failing to write a cache is never an error: the data is
simply read from the IDX files next time too. ``LOGREG_MNIST_NO_CACHE=1`` turns the
cache off.

Trust: nothing in the cache is believed without a check on every open:

- the manifest must name the same source files with the same size and
  modification time (a replaced file makes the cache stale);
- each ``.npy`` file must have the expected header (uint8, the recorded shape)
  and exactly the size that header implies (a truncated file fails);
- the SHA-256 of the IDX header rebuilt from the shape followed by the array's
  bytes (that is, of the IDX content the array came from) must equal the digest of
  the source file's own content, computed from the source file (decompressed on the
  fly, nothing kept), not read from the manifest: a manifest and arrays forged
  together are caught, since the cache never vouches for itself. For genuine MNIST
  the digest is also MNIST's published SHA-256. Hashing 55 MB takes a few tens of
  milliseconds with hardware SHA; decompressing MNIST's gzip files, half a second,
  once per process.

A cache that fails any check is ignored, and rebuilt from the IDX files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mmap
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from .._files import publish
from .idx import idx_header, stream_digest
from .known import MNIST_SHA256

CACHE_DIR_NAME = ".logreg-mnist-cache"
MANIFEST = "manifest.json"
FORMAT = "logreg-mnist-decoded/1"
ENV_NO_CACHE = "LOGREG_MNIST_NO_CACHE"

Reader = Callable[[Mapping[str, Path]], tuple[dict[str, np.ndarray], dict[str, str]]]


def content_digest(array: np.ndarray) -> str:
    """SHA-256 of the IDX content of a uint8 ``array``: its header, then its bytes in C order."""
    h = hashlib.sha256(idx_header(array.shape))
    h.update(np.ascontiguousarray(array).reshape(-1).view(np.uint8).data)  # bytes in C order, none copied
    return h.hexdigest()


def release_pages(array: np.ndarray) -> None:
    """Let the OS drop the resident pages of a memory-mapped ``array`` (the whole mapping).

    Nothing changes for the program: touched again, the pages come back from the page
    cache. Used after a pass over the data (hashing it, or an engine copying it into its
    own layout) so that the process does not keep both resident. No-op for other arrays.
    """
    mapping = getattr(array, "_mmap", None)
    if mapping is None or not hasattr(mapping, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
        return
    with contextlib.suppress(OSError, ValueError):
        mapping.madvise(mmap.MADV_DONTNEED)


_source_digests: dict[tuple, str | None] = {}  # (path, size, mtime, inode) -> content digest, this process


def source_digest(path: Path, limit: int) -> str | None:
    """SHA-256 of the IDX content of the source file ``path`` (at most ``limit`` bytes),
    computed from the file (once per process and version of the file); None when unreadable."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns, st.st_ino, limit)
    if key not in _source_digests:
        _source_digests[key] = stream_digest(path, limit)
    return _source_digests[key]


def _sources(paths: Mapping[str, Path]) -> dict[str, dict]:
    out = {}
    for name, path in paths.items():
        st = os.stat(path)
        out[name] = {"file": Path(path).name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    return out


def _writable(directory: Path) -> bool:
    """Whether we may write in ``directory``: access allowed *and* some write bit set
    (root may write anywhere, but a directory made read-only is not meant to be written)."""
    try:
        return os.access(directory, os.W_OK) and bool(directory.stat().st_mode & 0o222)
    except OSError:
        return False


def candidate_dirs(data_dir: Path, paths: Mapping[str, Path]) -> list[Path]:
    """Where the cache of ``data_dir`` may live, in order of preference."""
    import platformdirs

    resolved = data_dir.resolve()
    key = hashlib.sha256(json.dumps([str(resolved), _sources(paths)], sort_keys=True).encode()).hexdigest()[:16]
    user = Path(platformdirs.user_cache_dir("logreg-mnist")) / "decoded" / key
    return [resolved / CACHE_DIR_NAME, user]


def _open_verified(cache: Path, paths: Mapping[str, Path]) -> tuple[dict[str, np.ndarray], dict[str, str]] | None:
    """The cached arrays and their digests, or None when the cache is absent or fails a check."""
    try:
        manifest = json.loads((cache / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if manifest.get("format") != FORMAT or manifest.get("sources") != _sources(paths):
        return None
    arrays, digests = {}, {}
    for name in paths:
        entry = manifest.get("arrays", {}).get(name)
        if not entry:
            return None
        digest = entry.get("sha256", "")
        if name in MNIST_SHA256 and digest != MNIST_SHA256[name] and manifest.get("mnist"):
            return None
        try:
            array = np.load(cache / f"{name}.npy", mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError):  # truncated, bad header
            return None
        if array.dtype != np.uint8 or list(array.shape) != entry.get("shape"):
            return None
        if content_digest(array) != digest:
            return None
        # anchored to the source file, not to the manifest: a forged manifest and array are refused
        if source_digest(paths[name], len(idx_header(array.shape)) + array.nbytes) != digest:
            return None
        release_pages(array)
        arrays[name], digests[name] = array, digest
    return arrays, digests


def _write(
    cache: Path, paths: Mapping[str, Path], arrays: Mapping[str, np.ndarray], digests: Mapping[str, str]
) -> bool:
    """Write the cache into ``cache``; False (and nothing half-written left) when it cannot."""
    try:
        cache.mkdir(parents=True, exist_ok=True)
        entries = {}
        for name, array in arrays.items():
            array = np.ascontiguousarray(array)
            if array.dtype != np.uint8:
                return False
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=cache)
            try:
                with os.fdopen(fd, "wb") as f:
                    np.lib.format.write_array(f, array, allow_pickle=False)
                publish(tmp, cache / f"{name}.npy")
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            entries[name] = {"shape": list(array.shape), "sha256": digests[name]}
        manifest = {
            "format": FORMAT,
            "sources": _sources(paths),
            "arrays": entries,
            "mnist": all(digests.get(n) == h for n, h in MNIST_SHA256.items()),
        }
        fd, tmp = tempfile.mkstemp(prefix=f".{MANIFEST}.", suffix=".tmp", dir=cache)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1)
        publish(tmp, cache / MANIFEST)
        return True
    except OSError:
        return False


def read_cached(
    data_dir: Path, paths: Mapping[str, Path], reader: Reader
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The arrays of ``paths`` and the SHA-256 of each file's IDX content, from the cache when
    it passes its checks, else from ``reader`` (the IDX files), then cached for next time.

    Args:
        data_dir: the directory holding the IDX files.
        paths: name -> IDX file (raw or gzip).
        reader: reads and verifies the IDX files: returns (arrays, digests).
    """
    if os.environ.get(ENV_NO_CACHE) == "1":
        return reader(paths)
    try:
        candidates = candidate_dirs(data_dir, paths)
    except OSError:
        return reader(paths)
    for cache in candidates:
        found = _open_verified(cache, paths)
        if found is not None:
            return found
    arrays, digests = reader(paths)
    if all(a.dtype == np.uint8 for a in arrays.values()):
        for cache in candidates:
            if (cache.parent.exists() and not _writable(cache.parent)) or (cache.exists() and not _writable(cache)):
                continue
            if _write(cache, paths, arrays, digests):
                break
    return arrays, digests
