"""Checking where output will go before anything is computed or created.

Every command that writes (a run directory, plots, a picture) checks its target
here first, so that a wrong path is one clear error naming the flag, not a
traceback after minutes of work. ``what`` names the flag or argument the path
came from (``--out``, ``out_dir``).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import ConfigError


def _nearest_existing(path: Path) -> Path:
    for parent in [path, *path.parents]:
        if parent.exists():
            return parent
    return Path(".")


def _writable(directory: Path) -> bool:
    return os.access(directory, os.W_OK | os.X_OK)


def check_output_dir(path: str | os.PathLike, what: str) -> Path:
    """Refuse ``path`` as a directory to write into: an existing file, or a place that cannot be written.

    A missing directory is fine when its nearest existing ancestor is a writable directory
    (it is created later, with its parents, by :func:`make_dir`).
    """
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"{what} {path}: expected a directory, found an existing file")
        if not _writable(path):
            raise ConfigError(f"{what} {path}: the directory is not writable")
        return path
    base = _nearest_existing(path.parent if path.parent != path else path)
    if not base.is_dir():
        raise ConfigError(f"{what} {path}: cannot create it, {base} is a file, not a directory")
    if not _writable(base):
        raise ConfigError(f"{what} {path}: cannot create it, {base} is not writable")
    return path


def check_output_file(path: str | os.PathLike, what: str, suffix: str | None = None) -> Path:
    """Refuse ``path`` as a file to write: a directory, a missing or unwritable parent, a wrong suffix.

    An existing file is replaced (atomically, when written).
    """
    path = Path(path)
    if suffix is not None and path.suffix.lower() != suffix:
        raise ConfigError(f"{what} {path}: expected a file name ending in {suffix}, found {path.suffix or 'no suffix'}")
    if path.is_dir():
        raise ConfigError(f"{what} {path}: expected a file name, found a directory")
    parent = path.parent
    if not parent.exists():
        raise ConfigError(f"{what} {path}: the directory {parent} does not exist")
    if not parent.is_dir():
        raise ConfigError(f"{what} {path}: {parent} is a file, not a directory")
    if not _writable(parent):
        raise ConfigError(f"{what} {path}: the directory {parent} is not writable")
    return path


# Failures that come from the path the user gave, not from the machine (a full disk is not one).
_PATH_ERRNOS = {
    errno.EACCES,
    errno.EPERM,
    errno.ENOENT,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EROFS,
    errno.ENAMETOOLONG,
    errno.EEXIST,
}


@contextmanager
def writing(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Turn a write that fails because of the path itself (permissions, a read-only or odd place)
    into a :class:`ConfigError` naming ``what`` and ``path``; other failures pass through."""
    try:
        yield
    except OSError as e:
        if e.errno not in _PATH_ERRNOS:
            raise
        raise ConfigError(f"{what} {path}: cannot write there: {e.strerror or e}") from None


def make_dir(path: str | os.PathLike, what: str) -> Path:
    """Create ``path`` and its parents; a failure is a :class:`ConfigError` naming ``what``."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"{what} {path}: expected a directory, found an existing file") from None
    except OSError as e:
        raise ConfigError(f"{what} {path}: cannot create the directory: {e.strerror or e}") from None
    return path
