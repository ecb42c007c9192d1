"""Writing files so that nothing half-written ever sits under a final name.

Every file is written under a temporary name beside its final one and renamed when
complete. The temporary name is chosen before the file exists and the file is
created inside the block that removes it on failure, so an exception or a Ctrl-C
at any moment (even between creating the file and starting to write) leaves no
temporary file behind.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write every byte of ``data`` to the file descriptor ``fd`` (a disk that fills raises OSError)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@contextmanager
def temporary_file(directory: str | os.PathLike, prefix: str, suffix: str = ".tmp") -> Iterator[tuple[int, Path]]:
    """A new, empty file ``<directory>/<prefix><random><suffix>``, open for writing.

    Yields ``(fd, path)``. The descriptor is closed when the block ends; the file is
    removed if the block raises anything (KeyboardInterrupt included) and kept
    otherwise (the block renames it, see :func:`publish`).
    """
    fd = -1
    path = None
    try:
        while True:
            # The name is known before the file exists, so the cleanup below can remove it
            # whenever an interrupt lands, even between its creation and the next line.
            path = Path(directory) / f"{prefix}{secrets.token_hex(8)}{suffix}"
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
            except FileExistsError:  # another writer's name: not ours to remove
                path = None
                continue
            break
        yield fd, path
    except BaseException:
        if path is not None:
            path.unlink(missing_ok=True)
        raise
    finally:
        if fd >= 0:
            os.close(fd)


def publish(tmp: str | os.PathLike, final: str | os.PathLike) -> None:
    """Give a finished temporary file ordinary permissions and rename it to ``final``.

    The temporary file is created readable by its owner only; a data or model file
    is an ordinary file (``0666`` less the umask).
    """
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, final)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, flush it to disk, rename it.

    Raises:
        OSError: writing failed (a full disk: ``errno.ENOSPC``); ``path`` is untouched
            and no temporary file is left.
    """
    path = Path(path)
    with temporary_file(path.parent, f".{path.name}.") as (fd, tmp):
        write_all(fd, data)
        os.fsync(fd)
        publish(tmp, path)


def append_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Append ``data`` to ``path`` whole or not at all.

    Raises:
        OSError: writing failed; the file is cut back to its previous length, so a
            full disk never leaves half a line behind.
    """
    fd = os.open(
        path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0), 0o666
    )
    try:
        size = os.fstat(fd).st_size
        try:
            write_all(fd, data)
        except OSError:
            os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)
