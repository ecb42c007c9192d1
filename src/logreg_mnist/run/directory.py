"""A run directory and its lock (:class:`RunDir`): who owns it, what it holds, how it is written.

A run directory is owned by one process at a time: a run, or a resume, holds an
exclusive ``fcntl.flock`` on ``<dir>/.lock`` (which records its pid) from before it
reads anything there until it ends; a second process is refused at once, told
the holder's pid. The lock goes with the process, so a killed run leaves none, and
the next holder removes the temporary files a killed run left. The lock is taken
once per run (by :func:`logreg_mnist.train.train`); it is not re-entrant.

A write that fails (a full disk) ends the run with a :class:`StorageError` that
says what is kept and how to go on; files are written atomically, so what was
there before stays intact. What is written, and when, is the recorder's
(:class:`~logreg_mnist.run.recorder.RunRecorder`).
"""

from __future__ import annotations

import errno
import json
import os
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np

from .._paths import check_output_dir, make_dir
from ..config import TrainConfig
from ..errors import ConfigError, RunBusyError, StorageError, show_path
from ..persistence import BEST, CHECKPOINT, CONFIG, HISTORY, SNAPSHOTS, HistoryWriter, atomic_write_text, save_model
from .foreign import PLOTS, foreign_entries, remove_entry

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: runs are not locked
    fcntl = None  # type: ignore[assignment]

LOCK = ".lock"
_DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)
_held: dict[str, int] = {}  # resolved run directory -> the thread of this process that owns it
_held_guard = threading.Lock()

# What makes a directory a run: any of these. Cleared by overwrite=True, with SNAPSHOTS and PLOTS.
RUN_FILES = (CONFIG, BEST, CHECKPOINT, HISTORY)
_LOCK_BYTES = 32  # a lock file holds a pid and a newline; anything longer was written by someone else


def check_run_target(
    path: str | os.PathLike, *, resume: bool = False, overwrite: bool = False, what: str = "out_dir"
) -> Path:
    """Refuse a run directory that cannot be used as asked, before anything is created.

    A directory that holds a run (:meth:`RunDir.holds_run`: a checkpoint, or the best
    model of a run that cannot be resumed) is refused unless ``resume`` (continue it)
    or ``overwrite`` (clear it first); a run stopped before its first checkpoint holds
    nothing worth keeping and is used again. A path that is a file, or whose nearest
    existing parent is not a writable directory, is refused. :func:`~logreg_mnist.train.train`
    calls this again under the directory's lock, where it settles a race between two processes.

    Raises:
        ConfigError: naming ``what`` (the flag or argument), the path and the way out.
    """
    path = Path(path)
    if resume and overwrite:
        raise ConfigError(f"{what}: resume and overwrite exclude each other")
    check_output_dir(path, what)
    if resume and not (path.is_dir() and any((path / name).exists() for name in RUN_FILES)):
        raise ConfigError(f"{show_path(path)}: no run to resume here (expected {CONFIG} and {CHECKPOINT})")
    foreign = foreign_entries(path) if path.is_dir() else []
    if foreign and resume:
        raise ConfigError(
            f"{show_path(path)}: cannot resume: expected the files of a logreg-mnist run, found {'; '.join(foreign)}"
        )
    if foreign and not overwrite:
        raise ConfigError(
            f"{show_path(path)}: expected a new directory or a logreg-mnist run, found {'; '.join(foreign)}; "
            "these are kept: replace them with --overwrite (overwrite=True), or choose another --out"
        )
    if not (resume or overwrite) and RunDir(path).holds_run():
        where = show_path(path)
        if not (path / CHECKPOINT).is_file():  # a cg or lbfgs run: nothing to continue
            raise ConfigError(
                f"{where} already holds a run that cannot be continued (no {CHECKPOINT}); "
                "replace it with --overwrite (overwrite=True), or choose another --out"
            )
        raise ConfigError(
            f"{where} already holds a run; continue it with --resume {where} (resume=True), "
            "replace it with --overwrite (overwrite=True), or choose another --out"
        )
    return path


def clear_run(path: Path) -> None:
    """Remove a run's files from ``path`` (its own names only: anything else is left).

    A name that is a symbolic link loses the link, never what it points to; a
    directory tree is removed without following the links inside it.

    Raises:
        StorageError: an entry cannot be removed (what was removed before is said).
    """
    for name in (*RUN_FILES, SNAPSHOTS, PLOTS):
        try:
            remove_entry(path / name)
        except OSError as e:
            raise StorageError(
                f"{show_path(path / name)}: cannot remove it for --overwrite: {e.strerror or e}; "
                "remove it by hand, then run again"
            ) from None


class RunDir:
    """The files of one run (see :mod:`logreg_mnist.persistence`); None writes nothing."""

    def __init__(self, path: str | os.PathLike | None):
        self.path = Path(path) if path is not None else None
        self.optimizer = "sgd"  # set by create: SGD runs keep a checkpoint to resume from; cg and lbfgs do not

    @property
    def _dir(self) -> Path:
        """The directory, for the methods that are called only when there is one."""
        assert self.path is not None, "a run kept in memory has no directory"
        return self.path

    # ownership

    @contextmanager
    def owned(self) -> Iterator[RunDir]:
        """Hold the directory's exclusive lock for the block (creating the directory).

        Taken once per run: a second hold of the same directory, by another process or
        by any thread of this one (this one included), is refused.

        Raises:
            RunBusyError: another process or thread holds the lock; names its pid.
            StorageError: the directory or its lock file cannot be created.
        """
        if self.path is None or fcntl is None:
            yield self
            return
        created = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            key = str(self.path.resolve())
        except FileExistsError:
            raise ConfigError(f"{show_path(self.path)}: expected a directory, found an existing file") from None
        except OSError as e:
            if e.errno in _DISK_FULL:
                raise self._write_error(e, "the run directory", kept=False) from None
            raise ConfigError(f"{show_path(self.path)}: cannot create the directory: {e.strerror or e}") from None
        me = threading.get_ident()
        with _held_guard:
            owner = _held.get(key)
            if owner is None:
                _held[key] = me
        if owner is not None:
            who = "another thread of this process" if owner != me else "a run of this thread, which owns it already"
            raise RunBusyError(
                f"{show_path(self.path)} is in use by {who} (pid {os.getpid()}); wait for its run "
                "to end, or choose another directory"
            )
        fd = None
        try:
            fd = self._lock()
            self._remove_leftovers()
            yield self
        finally:
            if created and fd is not None:  # while the lock is held
                self._remove_if_unused()
            if fd is not None and fd >= 0:
                with suppress(OSError):
                    os.ftruncate(fd, 0)
                os.close(fd)  # releases the flock
            with _held_guard:
                _held.pop(key, None)

    def _remove_if_unused(self) -> None:
        """Remove the directory this hold created when nothing but the lock was written in it
        (a run refused or failed before it began leaves nothing behind)."""
        try:
            if [p.name for p in self._dir.iterdir()] in ([], [LOCK]):
                (self._dir / LOCK).unlink(missing_ok=True)
                self._dir.rmdir()
        except OSError:
            pass

    def _lock(self) -> int:
        """Take the flock; returns its descriptor, or -1 where the filesystem has no locks."""
        lock = self._dir / LOCK
        flags = os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(lock, flags, 0o666)
        except OSError as e:
            if e.errno == errno.ELOOP or os.path.islink(lock):
                raise self._foreign_lock("a symbolic link") from None
            raise self._write_error(e, LOCK, kept=False) from None
        try:
            _check_lock_file(fd, self._foreign_lock)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise RunBusyError(
                f"{show_path(self.path)} is in use by another process ({holder}), which holds its lock "
                f"{LOCK}: a run or a resume is under way there; wait for it to end, or choose another directory"
            ) from None
        except OSError as e:  # a filesystem without locks (some network ones): the run goes on unlocked
            os.close(fd)
            if e.errno in _NO_LOCKS:
                return -1
            raise self._write_error(e, LOCK, kept=False) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            _check_lock_file(fd, self._foreign_lock)  # again, now that no other run writes it
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:  # a full disk: the lock holds all the same, only the pid is not recorded
            pass
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _foreign_lock(self, found: str) -> ConfigError:
        return ConfigError(
            f"{show_path(self._dir / LOCK)}: expected a run's lock file (a regular file holding a pid), "
            f"found {found}; it is left as it is: move it away, or choose another directory"
        )

    def _remove_leftovers(self) -> None:
        """Remove the temporary files a killed run left (only a lock holder writes them)."""
        names = (BEST, CHECKPOINT, CONFIG, HISTORY)
        found = [p for n in names for p in self._dir.glob(f".{n}.*.tmp")]
        if (self._dir / SNAPSHOTS).is_dir() and not (self._dir / SNAPSHOTS).is_symlink():
            found += (self._dir / SNAPSHOTS).glob(".epoch-*.safetensors.*.tmp")
        for p in found:
            p.unlink(missing_ok=True)

    def holds_run(self) -> bool:
        """Whether a new run here would replace something worth keeping.

        True when there is a checkpoint (``--resume`` continues it), or a best model of a
        run that cannot be resumed (cg, lbfgs, or no readable ``config.json``). A directory
        whose SGD run stopped before its first checkpoint holds nothing a new run would
        lose, and is used again as it is.
        """
        if self.path is None:
            return False
        if (self.path / CHECKPOINT).is_file():
            return True
        if not (self.path / BEST).is_file():
            return False
        try:
            return json.loads((self.path / CONFIG).read_text(encoding="utf-8"))["config"]["optimizer"] != "sgd"
        except (OSError, ValueError, KeyError, TypeError):
            return True

    # writing

    def create(
        self, config: TrainConfig, record: dict[str, Any], rows: list[dict[str, Any]] | None = None, **runtime: Any
    ) -> None:
        """Write ``config.json``: the config, its data ``record`` (see
        :func:`~logreg_mnist.run.provenance.data_record`) and ``runtime`` choices such as the
        engine beside the config, which they do not change; start the history with ``rows``."""
        self.optimizer = config.optimizer
        if self.path is None:
            return
        try:
            make_dir(self.path, "out_dir")
            atomic_write_text(
                self.path / CONFIG, json.dumps({"config": config.to_dict(), **record, **runtime}, indent=2) + "\n"
            )
            self.history = HistoryWriter(self.path / HISTORY, keep=rows)
        except OSError as e:
            raise self._write_error(e, CONFIG) from None

    def append_history(self, row: dict[str, Any]) -> None:
        if self.path is not None:
            try:
                self.history.append(row)
            except OSError as e:
                raise self._write_error(e, HISTORY) from None

    def save(self, name: str, W: np.ndarray, b: np.ndarray, meta: dict[str, Any]) -> None:
        if self.path is None:
            return
        target = self.path / name
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            save_model(target, W, b, meta)
        except OSError as e:
            raise self._write_error(e, name) from None

    # what to tell the user

    def kept(self) -> str:
        """The run's files that exist, with what they hold, e.g. ``best.safetensors (epoch 30, ...)``."""
        from ..reporting import percent

        parts = []
        best = self._dir / BEST
        if best.is_file():
            meta = _metadata(best)
            figures = []
            recorded = meta.get("config")  # the model's own optimizer: a run not yet opened says sgd
            optimizer = recorded.get("optimizer", self.optimizer) if isinstance(recorded, dict) else self.optimizer
            if isinstance(meta.get("epoch"), int):
                figures.append(f"{'epoch' if optimizer == 'sgd' else 'iteration'} {meta['epoch']}")
            if isinstance(meta.get("valid_error"), float):
                n_valid = meta.get("n_valid") if isinstance(meta.get("n_valid"), int) else None
                figures.append(f"validation error {percent(meta['valid_error'], n_valid, 4)}")
            parts.append(f"the best model in {show_path(best)}" + (f" ({', '.join(figures)})" if figures else ""))
        checkpoint = self._dir / CHECKPOINT
        if checkpoint.is_file():
            epoch = _metadata(checkpoint).get("state", {}).get("epoch")
            parts.append(
                f"a checkpoint in {show_path(checkpoint)}"
                + (f" (end of epoch {epoch})" if isinstance(epoch, int) else "")
            )
        return " and ".join(parts) if parts else "no model was saved yet"

    def next_step(self) -> str:
        """How to go on with this directory (an imperative clause), naming only what exists."""
        where = show_path(self.path)
        if self.optimizer != "sgd":
            return f"start a new run (a {self.optimizer} run cannot be resumed)"
        if (self._dir / CHECKPOINT).is_file():
            return f"continue with: logreg-mnist train --resume {where}"
        if not (self._dir / CONFIG).is_file():
            return f"run it again: logreg-mnist train --out {where} (nothing of the run was written there)"
        return (
            f"start it again with: logreg-mnist train --resume {where} (no epoch had finished, so it "
            f"starts from the beginning; train --out {where} uses the directory again as well)"
        )

    def interrupted(self, epoch: int) -> str:
        """The line printed when a run is interrupted in ``epoch``."""
        kept = self.kept()
        return f"Interrupted in epoch {epoch}. Kept: {kept}; {self.next_step()}"

    def _write_error(self, e: OSError, name: str, kept: bool = True) -> StorageError:
        reason = "no space left on the device" if e.errno in _DISK_FULL else (e.strerror or str(e))
        text = f"{show_path(self.path)}: cannot write {name}: {reason}"
        if kept:
            fix = "Free some space" if e.errno in _DISK_FULL else "Once it can be written"
            text += f". Kept: {self.kept()}. {fix}, then {self.next_step()}"
        return StorageError(text)


def _metadata(path: Path) -> dict[str, Any]:
    """A model file's metadata (JSON-decoded), or {} when it cannot be read."""
    try:
        from safetensors import safe_open

        with safe_open(path, framework="np") as f:
            return {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
    except Exception:  # noqa: BLE001 - a message must not fail for want of figures
        return {}


def _check_lock_file(fd: int, refuse) -> None:
    """Refuse a lock file that is not a run's own: not a regular file, with another name
    linked to it (a hard link to a file elsewhere), or holding something other than a pid."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise refuse("a special file (a pipe, socket or device)" if not stat.S_ISDIR(st.st_mode) else "a directory")
    if st.st_nlink != 1:
        raise refuse(f"a file with {st.st_nlink} names (a hard link to another file)")
    if st.st_size > _LOCK_BYTES:
        raise refuse(f"a file of {st.st_size:,} bytes")
    text = os.pread(fd, _LOCK_BYTES, 0).strip()
    if text and not text.isdigit():
        raise refuse(f"a file holding {text[:_LOCK_BYTES]!r}")


def _holder(fd: int) -> str:
    """'pid N' from a held lock file (the holder writes it just after locking)."""
    for _ in range(50):
        try:
            text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        except OSError:
            break
        if text.isdigit():
            return f"pid {int(text)}"
        time.sleep(0.01)
    return "pid unknown"
