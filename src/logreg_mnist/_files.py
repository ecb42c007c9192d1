"""Writing files so that nothing half-written ever sits under a final name."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def publish(tmp: str | os.PathLike, final: str | os.PathLike) -> None:
    """Give a finished temporary file ordinary permissions and rename it to ``final``.

    ``mkstemp`` creates files readable by their owner only; a data or model file is
    an ordinary file (``0666`` less the umask).
    """
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, final)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, flush it to disk, rename it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
