"""One training run's record (:class:`History`) and its directory (:class:`RunDir`).

Shared by every optimiser, so that SGD, CG and L-BFGS runs look the same on disk.

A run directory is owned by one process at a time: a run, or a resume, holds an
exclusive ``fcntl.flock`` on ``<dir>/.lock`` (which records its pid) from before it
reads anything there until it ends; a second process is refused at once, told
the holder's pid. The lock goes with the process, so a killed run leaves none, and
the next holder removes the temporary files a killed run left.

A write that fails (a full disk) ends the run with a :class:`StorageError` that
says what is kept and how to go on; files are written atomically, so what was
there before stays intact.

A run remembers its data: ``config.json`` and every model file record the
dataset's identity, its location, the validation size and the class names, so
that commands given a run (or a model file) load the data the run was trained on
(:func:`load_run_data`).
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import persistence as io
from ._paths import check_output_dir, make_dir
from .config import TrainConfig
from .data import Dataset
from .errors import ConfigError, DataError, RunBusyError, StorageError, show_path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: runs are not locked
    fcntl = None

LOCK = ".lock"
_DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)
_held: dict[str, tuple[int, int]] = {}  # resolved run directory -> (thread id, depth) locked by this process
_held_guard = threading.Lock()

# What makes a directory a run: any of these. Cleared by overwrite=True, with SNAPSHOTS and PLOTS.
RUN_FILES = (io.CONFIG, io.BEST, io.CHECKPOINT, io.HISTORY)
PLOTS = "plots"


@dataclass(repr=False)
class History:
    """What a run did: one row per epoch and the best model's figures.

    Attributes:
        rows: dicts with epoch, iteration, train_nll, valid_error, test_error
            (None where not measured), best_valid_error, elapsed (seconds).
        best_valid_error, test_error: fractions; test_error is measured at the best.
        best_epoch, best_iteration: where the best model was found (iteration is
            counted in minibatches from 0, as in the chapter).
        epochs: epochs run. seconds: wall time, resumed runs included.
        stopped_by: "patience", "n_epochs", "max_iter", "converged" or "dry_run"
            ("" when loaded from a directory by :func:`load_history`).
        n_valid, n_test: how many examples the errors are over (9,600 each with
            the tutorial preset, which drops partial minibatches; else all).
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    best_valid_error: float = math.inf
    test_error: float = math.nan
    best_epoch: int = 0
    best_iteration: int = -1
    epochs: int = 0
    seconds: float = 0.0
    stopped_by: str = ""
    n_valid: int | None = None
    n_test: int | None = None

    def __repr__(self) -> str:
        def pct(error: float, n: int | None) -> str:
            return f"{error * 100:.4f} %" + (f" of {n:,}" if n else "")

        return (f"History({len(self.rows)} rows, epochs={self.epochs}, best_epoch={self.best_epoch}, "
                f"best_valid_error={pct(self.best_valid_error, self.n_valid)}, "
                f"test_error={pct(self.test_error, self.n_test)}, stopped_by={self.stopped_by!r})")


def scored(n: int, config: TrainConfig) -> int:
    """How many of ``n`` examples an error is measured over: whole minibatches only with ``drop_last``."""
    return (n // config.batch_size) * config.batch_size if config.drop_last else n


def scored_counts(data: Dataset, config: TrainConfig) -> tuple[int | None, int | None]:
    """(validation, test) examples the errors of a run on ``data`` are over (None: unknown)."""
    if not (hasattr(data, "valid") and hasattr(data, "test")):
        return None, None
    return scored(len(data.valid), config), scored(len(data.test), config)


def data_record(config: TrainConfig, data: Dataset) -> dict[str, Any]:
    """What a run and its model files remember about their data (see :func:`load_run_data`)."""
    record: dict[str, Any] = {"dataset": data.identity}
    if getattr(data, "source", None) is not None:
        record["data_source"] = str(Path(data.source).resolve())
    if hasattr(data, "valid"):
        record["valid_size"] = len(data.valid)
    if getattr(data, "class_names", None) is not None:
        record["class_names"] = list(data.class_names)
    n_valid, n_test = scored_counts(data, config)
    if n_valid is not None:
        record.update(n_valid=n_valid, n_test=n_test)
    return record


def check_run_target(path: str | os.PathLike, *, resume: bool = False, overwrite: bool = False,
                     what: str = "out_dir") -> Path:
    """Refuse a run directory that cannot be used as asked, before anything is created.

    A directory that holds a run (:meth:`RunDir.holds_run`: a checkpoint, or the best
    model of a run that cannot be resumed) is refused unless ``resume`` (continue it)
    or ``overwrite`` (clear it first); a run stopped before its first checkpoint holds
    nothing worth keeping and is used again. A path that is a file, or whose nearest
    existing parent is not a writable directory, is refused. The drivers call this
    again under the directory's lock, where it settles a race between two processes.

    Raises:
        ConfigError: naming ``what`` (the flag or argument), the path and the way out.
    """
    path = Path(path)
    if resume and overwrite:
        raise ConfigError(f"{what}: resume and overwrite exclude each other")
    check_output_dir(path, what)
    if resume and not (path.is_dir() and any((path / name).exists() for name in RUN_FILES)):
        raise ConfigError(f"{show_path(path)}: no run to resume here (expected {io.CONFIG} and {io.CHECKPOINT})")
    if not (resume or overwrite) and RunDir(path).holds_run():
        where = show_path(path)
        if not (path / io.CHECKPOINT).is_file():  # a cg or lbfgs run: nothing to continue
            raise ConfigError(f"{where} already holds a run that cannot be continued (no {io.CHECKPOINT}); "
                              "replace it with --overwrite (overwrite=True), or choose another --out")
        raise ConfigError(f"{where} already holds a run; continue it with --resume {where} (resume=True), "
                          "replace it with --overwrite (overwrite=True), or choose another --out")
    return path


def clear_run(path: Path) -> None:
    """Remove a run's files from ``path`` (its own files only: anything else is left)."""
    for name in RUN_FILES:
        (path / name).unlink(missing_ok=True)
    for name in (io.SNAPSHOTS, PLOTS):
        if (path / name).is_dir():
            shutil.rmtree(path / name)


class RunDir:
    """The files of one run (see :mod:`logreg_mnist.persistence`); None writes nothing."""

    def __init__(self, path: str | os.PathLike | None):
        self.path = Path(path) if path is not None else None
        self.optimizer = "sgd"  # set by create: SGD runs keep a checkpoint to resume from; cg and lbfgs do not

    # ownership

    @contextmanager
    def owned(self) -> Iterator[RunDir]:
        """Hold the directory's exclusive lock for the block (creating the directory).

        Re-entrant within one thread, so a driver that calls another driver on the same
        directory does not refuse itself.

        Raises:
            RunBusyError: another process (or thread) holds the lock; names its pid.
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
            owner, depth = _held.get(key, (me, 0))
            if owner != me:
                raise RunBusyError(f"{show_path(self.path)} is in use by another thread of this process "
                                   f"(pid {os.getpid()}); wait for its run to end, or choose another directory")
            if depth:
                _held[key] = (me, depth + 1)
        if depth:
            try:
                yield self
            finally:
                with _held_guard:
                    _held[key] = (me, depth)
            return
        fd = None
        try:
            fd = self._lock()
            with _held_guard:
                _held[key] = (me, 1)
            self._remove_leftovers()
            yield self
        finally:
            if fd is not None:
                with _held_guard:
                    _held.pop(key, None)
            if created and fd is not None:  # while the lock is held
                self._remove_if_unused()
            if fd is not None and fd >= 0:
                try:
                    os.ftruncate(fd, 0)
                except OSError:
                    pass
                os.close(fd)  # releases the flock

    def _remove_if_unused(self) -> None:
        """Remove the directory this hold created when nothing but the lock was written in it
        (a run refused or failed before it began leaves nothing behind)."""
        try:
            if [p.name for p in self.path.iterdir()] in ([], [LOCK]):
                (self.path / LOCK).unlink(missing_ok=True)
                self.path.rmdir()
        except OSError:
            pass

    def _lock(self) -> int:
        """Take the flock; returns its descriptor, or -1 where the filesystem has no locks."""
        lock = self.path / LOCK
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as e:
            raise self._write_error(e, LOCK, kept=False) from None
        try:
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
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:  # a full disk: the lock holds all the same, only the pid is not recorded
            pass
        return fd

    def _remove_leftovers(self) -> None:
        """Remove the temporary files a killed run left (only a lock holder writes them)."""
        names = (io.BEST, io.CHECKPOINT, io.CONFIG, io.HISTORY)
        found = [p for n in names for p in self.path.glob(f".{n}.*.tmp")]
        if (self.path / io.SNAPSHOTS).is_dir():
            found += (self.path / io.SNAPSHOTS).glob(".epoch-*.safetensors.*.tmp")
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
        if (self.path / io.CHECKPOINT).is_file():
            return True
        if not (self.path / io.BEST).is_file():
            return False
        try:
            return json.loads((self.path / io.CONFIG).read_text(encoding="utf-8"))["config"]["optimizer"] != "sgd"
        except (OSError, ValueError, KeyError, TypeError):
            return True

    def check_new(self) -> None:
        """Refuse to start a new run over one that :meth:`holds_run` (call with the lock held).

        Raises:
            ConfigError: naming the way out (``--resume``, ``--overwrite``, or another directory).
        """
        if self.path is not None:
            check_run_target(self.path)

    # writing

    def create(self, config: TrainConfig, dataset: Dataset, resume_rows: list[dict] | None = None,
               **runtime: Any) -> None:
        """Write ``config.json`` (with ``runtime`` choices such as the engine beside the
        config, which they do not change) and start the history."""
        self.optimizer = config.optimizer
        if self.path is None:
            return
        try:
            make_dir(self.path, "out_dir")
            io.atomic_write_text(self.path / io.CONFIG, json.dumps(
                {"config": config.to_dict(), **data_record(config, dataset), **runtime}, indent=2) + "\n")
            self.history = io.HistoryWriter(self.path / io.HISTORY, keep=resume_rows)
        except OSError as e:
            raise self._write_error(e, io.CONFIG) from None

    def append_history(self, row: dict[str, Any]) -> None:
        if self.path is not None:
            try:
                self.history.append(row)
            except OSError as e:
                raise self._write_error(e, io.HISTORY) from None

    def save(self, name: str, W: np.ndarray, b: np.ndarray, meta: dict[str, Any]) -> None:
        if self.path is None:
            return
        target = self.path / name
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            io.save_model(target, W, b, meta)
        except OSError as e:
            raise self._write_error(e, name) from None

    # what to tell the user

    def kept(self) -> str:
        """The run's files that exist, with what they hold, e.g. ``best.safetensors (epoch 30, ...)``."""
        parts = []
        best = self.path / io.BEST
        if best.is_file():
            meta = _metadata(best)
            figures = []
            if isinstance(meta.get("epoch"), int):
                figures.append(f"{'epoch' if self.optimizer == 'sgd' else 'iteration'} {meta['epoch']}")
            if isinstance(meta.get("valid_error"), float):
                figures.append(f"validation error {meta['valid_error'] * 100:.4f} %")
            parts.append(f"the best model in {show_path(best)}" + (f" ({', '.join(figures)})" if figures else ""))
        checkpoint = self.path / io.CHECKPOINT
        if checkpoint.is_file():
            epoch = _metadata(checkpoint).get("state", {}).get("epoch")
            parts.append(f"a checkpoint in {show_path(checkpoint)}"
                         + (f" (end of epoch {epoch})" if isinstance(epoch, int) else ""))
        return " and ".join(parts) if parts else "no model was saved yet"

    def next_step(self) -> str:
        """How to go on with this directory (an imperative clause), naming only what exists."""
        where = show_path(self.path)
        if self.optimizer != "sgd":
            return f"start a new run (a {self.optimizer} run cannot be resumed)"
        if (self.path / io.CHECKPOINT).is_file():
            return f"continue with: logreg-mnist train --resume {where}"
        if not (self.path / io.CONFIG).is_file():
            return f"run it again: logreg-mnist train --out {where} (nothing of the run was written there)"
        return (f"start it again with: logreg-mnist train --resume {where} (no epoch had finished, so it "
                f"starts from the beginning; train --out {where} uses the directory again as well)")

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
    except Exception:  # a message must not fail for want of figures
        return {}


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


def model_meta(config: TrainConfig, data: Dataset, **figures: Any) -> dict[str, Any]:
    return {"config": config.to_dict(), **data_record(config, data), **figures}


def recorded_data(target: str | os.PathLike) -> dict[str, Any]:
    """What a run directory (its ``config.json``) or a model file (its metadata) says about its data.

    Returns:
        A dict with any of ``dataset``, ``data_source``, ``valid_size``,
        ``class_names``, ``n_valid``, ``n_test`` (older files record fewer).
    """
    target = Path(target)
    keys = ("dataset", "data_source", "valid_size", "class_names", "n_valid", "n_test")
    if target.is_dir() and (target / io.CONFIG).is_file():
        try:
            meta = json.loads((target / io.CONFIG).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"{target / io.CONFIG}: cannot read the run's configuration: {e}") from None
    else:
        _, meta = io.load_model(target)
    return {k: meta[k] for k in keys if isinstance(meta, dict) and meta.get(k) is not None}


def class_names_for(meta: dict[str, Any], n_classes: int) -> list[str]:
    """The class names recorded in ``meta`` (a model's or run's), numeric ones for the rest."""
    names = [str(n) for n in (meta.get("class_names") or [])][:n_classes]
    return names + [str(i) for i in range(len(names), n_classes)]


def _stderr_warning(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr)


def load_run_data(
    target: str | os.PathLike, data_dir: str | os.PathLike | None = None, *, download: bool | None = None,
    progress: bool = True, warn: Callable[[str], None] = _stderr_warning, max_resident: int | None = None,
) -> Dataset:
    """The dataset a run directory (or a model file) was trained on, as recorded.

    With ``data_dir``, that data is used instead; ``warn`` is told when its identity
    differs from the recorded one. Without it, the recorded location is loaded and
    must hold the recorded dataset; MNIST, being fetchable and verifiable anywhere,
    falls back to the usual place (``$LOGREG_MNIST_DATA_DIR``, the user cache)
    when its recorded location is gone. Files that record nothing use the usual place.
    ``max_resident`` is the memory budget :func:`~logreg_mnist.data.load_mnist` reads the
    files under (gzip images larger than it are decompressed once, not into memory).

    Raises:
        DataError: the recorded data is not there, or is not the recorded dataset.
    """
    from .data import load_mnist
    from .data.known import by_identity

    rec = recorded_data(target)
    identity = rec.get("dataset")
    valid_size = rec.get("valid_size", 10_000)
    known = by_identity(identity)
    title = known.title if known else identity
    if data_dir is not None:
        data = load_mnist(data_dir, download=download, valid_size=valid_size, progress=progress,
                         max_resident=max_resident)
        if identity is not None and data.identity != identity:
            warn(f"{target} was trained on {title}, using {data.title} from {data_dir} as asked")
        return data
    source = rec.get("data_source")
    if source is not None and (identity != "mnist" or Path(source).exists()):
        if not Path(source).exists():
            raise DataError(f"{target} was trained on {title} from {source}, which is not there now; "
                            "pass --data-dir DIR (data_dir=) with that dataset")
        try:
            data = load_mnist(source, download=False, valid_size=valid_size, progress=progress,
                         max_resident=max_resident)
        except DataError as e:
            raise DataError(f"{target} was trained on {title} from {source}, which cannot be loaded now "
                            f"({e}); pass --data-dir DIR (data_dir=) with that dataset") from None
    else:
        data = load_mnist(None, download=download, valid_size=valid_size, progress=progress,
                         max_resident=max_resident)
    if identity is not None and data.identity != identity:
        raise DataError(f"{target} was trained on {title}, but {data.source} now holds {data.title}; "
                        "pass --data-dir DIR (data_dir=) to use other data anyway")
    return data


def load_history(run_dir: str | os.PathLike) -> History:
    """The :class:`History` of a run directory, from its ``history.jsonl`` and best model.

    Its ``rows`` feed :func:`logreg_mnist.plots.learning_curves_figure`. ``stopped_by``
    is not recorded on disk and is left empty.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: expected a run directory, found "
                          f"{'a file' if run_dir.exists() else 'nothing'}")
    history = History(rows=io.read_history(run_dir))
    rows = history.rows
    if (run_dir / io.BEST).is_file():
        _, meta = io.load_model(run_dir / io.BEST)
        history.best_valid_error = float(meta.get("valid_error", math.inf))
        test = meta.get("test_error")
        history.test_error = math.nan if test is None else float(test)
        history.best_epoch = int(meta.get("epoch", 0))
        history.best_iteration = int(meta.get("iteration", -1))
        history.n_valid, history.n_test = meta.get("n_valid"), meta.get("n_test")
    if rows:
        history.epochs = int(rows[-1]["epoch"])
        history.seconds = float(rows[-1].get("elapsed") or 0.0)
    return history
