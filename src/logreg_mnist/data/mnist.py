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
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import platformdirs

from ..errors import DataError
from .cache import read_cached
from .fetch import DEFAULT_SOURCES, FILE_NAMES, MNIST_SHA256, existing_file, fetch_files
from .idx import read_idx_with_digest
from .stream import decompressed_copy, default_max_resident, idx_payload_bytes
from .known import by_identity, numeric_names, read_class_names, recognise
from .legacy import read_legacy_pickle

ENV_DATA_DIR = "LOGREG_MNIST_DATA_DIR"
PIXEL_SCALE = np.float32(1 / 256)  # the tutorial's mnist.pkl.gz: uint8 / 256, exact in float32
VALID_SIZE = 10_000  # the last 10,000 training images are the validation split


@dataclass(frozen=True)
class Split:
    """One split of a dataset.

    Attributes:
        labels: int64 array of shape (n,).
        pixels: uint8 array of shape (n, n_features), or None when the source had
            float pixels that are not multiples of 1/256.
    """

    labels: np.ndarray
    pixels: np.ndarray | None = None
    _images: np.ndarray | None = field(default=None, repr=False)

    @cached_property
    def images(self) -> np.ndarray:
        """float32 array of shape (n, n_features): ``pixels / 256``."""
        if self._images is not None:
            return self._images
        return self.pixels.astype(np.float32) * PIXEL_SCALE

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_features(self) -> int:
        source = self.pixels if self.pixels is not None else self._images
        return source.shape[1]


@dataclass(frozen=True)
class Dataset:
    """The three splits, where they came from, and whether they are verified MNIST.

    Attributes:
        identity: ``"mnist"`` or ``"fashion-mnist"`` when all four files match that
            dataset's SHA-256 (see :mod:`logreg_mnist.data.known`), else
            ``"idx-<16 hex digits>"`` (a fingerprint of the four files) or
            ``"pickle-<16 hex digits>"`` for a legacy pickle.
        class_names: one name per label (list of str): the known dataset's names,
            those of a ``classes.txt`` beside the files, else ``"0"``, ``"1"``, ...
    """

    train: Split
    valid: Split
    test: Split
    source: Path
    identity: str
    class_names: list[str] | None = None

    def __post_init__(self) -> None:
        names = self.class_names
        if names is None:
            known = by_identity(self.identity)
            names = list(known.class_names) if known else numeric_names(self.n_classes)
        names = [str(n) for n in names]
        if len(names) < self.n_classes:
            raise DataError(f"{self.source}: expected a name for each of the {self.n_classes} classes, "
                            f"found {len(names)}")
        object.__setattr__(self, "class_names", names)

    @property
    def verified(self) -> bool:
        """Whether the files are a known dataset's, by SHA-256 (MNIST, Fashion-MNIST)."""
        return by_identity(self.identity) is not None

    @property
    def title(self) -> str:
        """The dataset's name for people: ``"MNIST"``, ``"Fashion-MNIST"``, else its identity."""
        known = by_identity(self.identity)
        return known.title if known else self.identity

    @property
    def n_features(self) -> int:
        return self.train.n_features

    @property
    def n_classes(self) -> int:
        return int(max(int(s.labels.max()) for s in (self.train, self.valid, self.test) if len(s)) + 1)

    def split(self, name: str) -> Split:
        if name not in ("train", "valid", "test"):
            raise DataError(f"expected a split name in (train, valid, test), found {name!r}")
        return getattr(self, name)

    def summary(self) -> str:
        status = f"{self.title}, SHA-256 verified" if self.verified else f"unverified dataset {self.identity}"
        lines = [f"{status}, from {self.source}"]
        numeric = self.class_names == numeric_names(len(self.class_names))
        if not numeric:
            lines.append("  classes: " + ", ".join(f"{i} {n}" for i, n in enumerate(self.class_names)))
        side = int(round(np.sqrt(self.n_features)))
        shape = f"{side}x{side}" if side * side == self.n_features else f"{self.n_features} features"
        for name in ("train", "valid", "test"):
            s = self.split(name)
            first = " ".join(str(int(v)) for v in s.labels[:10])
            counts = np.bincount(s.labels, minlength=self.n_classes)
            lines.append(
                f"  {name:<5} {len(s):>6,} images {shape}, labels {s.labels.min()}-{s.labels.max()}, "
                f"per class {counts.min():,}-{counts.max():,}, first labels: {first}"
            )
        return "\n".join(lines)


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


def _to_split(images: np.ndarray, labels: np.ndarray) -> Split:
    return Split(labels=np.asarray(labels, dtype=np.int64), pixels=images.reshape(len(images), -1))


def _read_idx_dir(paths: dict[str, Path], max_resident: int | None = None,
                  progress: bool = False) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The four arrays and their content SHA-256, through the decoded cache (:mod:`.cache`).

    Data larger than the resident budget are not cached (the cache would be a second
    copy of files that do not fit in memory): they are read from their files.
    """
    budget = default_max_resident() if max_resident is None else max_resident
    payload = sum(idx_payload_bytes(p) or p.stat().st_size for p in paths.values())
    if payload > budget:
        return _read_idx_files(paths, max_resident, progress)
    return read_cached(next(iter(paths.values())).parent, paths,
                       lambda found: _read_idx_files(found, max_resident, progress))


def _read_idx_files(paths: dict[str, Path], max_resident: int | None = None,
                    progress: bool = False) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    arrays, digests = {}, {}
    for name in FILE_NAMES:
        kind = "images" if "images" in name else "labels"
        path = paths[name]
        if max_resident is not None and kind == "images" and idx_payload_bytes(path) > max_resident:
            path = decompressed_copy(path, default_cache_dir().parent / "decompressed", progress=progress)
        arrays[name], digests[name] = read_idx_with_digest(path, kind=kind)
    return arrays, digests


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
    if download is None:
        download = is_cache
    if not is_cache and not download:
        _check_named_directory(directory)

    paths = {name: existing_file(directory, name) for name in FILE_NAMES}
    missing = [n for n, p in paths.items() if p is None]
    arrays = digests = None
    if not missing:
        try:
            arrays, digests = _read_idx_dir(paths, max_resident, progress)
        except DataError:
            if not is_cache:
                raise
    cache_ok = arrays is not None and all(digests[n] == MNIST_SHA256[n] for n in FILE_NAMES)
    if missing or (is_cache and not cache_ok):
        if not download:
            what = f"missing {', '.join(missing)}" if missing else "cached files fail verification"
            hint = "" if is_cache else "; pass --download (download=True) to fetch MNIST into it"
            raise DataError(f"{directory}: {what} (and downloading is off{hint})")
        # Verifies what is there, replaces what fails, downloads what is missing.
        paths = fetch_files(directory, MNIST_SHA256, sources, progress=progress)
        arrays, digests = _read_idx_dir(paths, max_resident, progress)

    matches = [digests[n] == MNIST_SHA256[n] for n in FILE_NAMES]
    known = recognise(digests)
    class_names = None
    if known is not None:
        identity = known.identity
    elif any(matches):
        bad = [n for n, ok in zip(FILE_NAMES, matches) if not ok]
        raise DataError(
            f"{directory}: some files are MNIST's but {', '.join(bad)} "
            f"{'does' if len(bad) == 1 else 'do'} not match MNIST's SHA-256: a damaged copy? "
            "Replace them, or delete them to download fresh ones."
        )
    else:
        fingerprint = hashlib.sha256("".join(digests[n] for n in FILE_NAMES).encode()).hexdigest()
        identity = f"idx-{fingerprint[:16]}"
        labels = (arrays["train-labels-idx1-ubyte"], arrays["t10k-labels-idx1-ubyte"])
        n_classes = int(max(int(y.max()) for y in labels if len(y))) + 1
        class_names = read_class_names(directory, n_classes)

    return _split(
        arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"],
        arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"],
        directory, identity, valid_size, class_names,
    )


def _check_named_directory(directory: Path) -> None:
    """Refuse a directory the user named that does not exist or lacks one of the four files."""
    if not directory.exists():
        raise DataError(f"{directory}: no such data directory (expected a directory holding the four "
                        "MNIST-style IDX files, or a mnist.pkl.gz file); check the path, or pass --download "
                        "(download=True) to fetch MNIST into it")
    if not directory.is_dir():
        raise DataError(f"{directory}: expected a data directory or a mnist.pkl.gz file, found neither")
    missing = [n for n in FILE_NAMES if existing_file(directory, n) is None]
    if missing:
        raise DataError(f"{directory}: missing {', '.join(f'{n}[.gz]' for n in missing)} (expected the four "
                        "MNIST-style IDX files); pass --download (download=True) to fetch MNIST into it")


def _split(train_x, train_y, test_x, test_y, source: Path, identity: str, valid_size: int,
           class_names: list[str] | None = None) -> Dataset:
    for what, x, y in (("training", train_x, train_y), ("test", test_x, test_y)):
        if len(x) != len(y):
            raise DataError(f"{source}: {len(x):,} {what} images but {len(y):,} {what} labels")
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


def load_legacy_pickle(path: str | os.PathLike) -> Dataset:
    """Load the tutorial's ``mnist.pkl.gz`` safely (see :mod:`logreg_mnist.data.legacy`)."""
    path = Path(path)
    splits = read_legacy_pickle(path)
    out = []
    for x, y in splits:
        scaled = x.astype(np.float64) * 256
        if np.array_equal(scaled, np.round(scaled)) and scaled.max(initial=0) <= 255:
            out.append(Split(labels=y.astype(np.int64), pixels=scaled.astype(np.uint8)))
        else:
            out.append(Split(labels=y.astype(np.int64), _images=x.astype(np.float32)))
    fingerprint = hashlib.sha256()
    for s in out:
        fingerprint.update(np.ascontiguousarray(s.images).tobytes())
        fingerprint.update(s.labels.tobytes())
    return Dataset(*out, source=path, identity=f"pickle-{fingerprint.hexdigest()[:16]}")
