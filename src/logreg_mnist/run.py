"""One training run's record (:class:`History`) and its directory (:class:`RunDir`).

Shared by every optimiser, so that SGD, CG and L-BFGS runs look the same on disk.
A run remembers its data: ``config.json`` and every model file record the
dataset's identity, its location, the validation size and the class names, so
that commands given a run (or a model file) load the data the run was trained on
(:func:`load_run_data`).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import persistence as io
from ._paths import check_output_dir, make_dir
from .config import TrainConfig
from .data import Dataset
from .errors import ConfigError, DataError

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

    A directory that holds a run (any of :data:`RUN_FILES`) is refused unless
    ``resume`` (continue it) or ``overwrite`` (clear it first); a path that is a
    file, or whose nearest existing parent is not a writable directory, is refused.

    Raises:
        ConfigError: naming ``what`` (the flag or argument), the path and the way out.
    """
    path = Path(path)
    if resume and overwrite:
        raise ConfigError(f"{what}: resume and overwrite exclude each other")
    check_output_dir(path, what)
    holds = path.is_dir() and any((path / name).exists() for name in RUN_FILES)
    if resume and not holds:
        raise ConfigError(f"{path}: no run to resume here (expected {io.CONFIG} and {io.CHECKPOINT})")
    if holds and not (resume or overwrite):
        raise ConfigError(f"{path} already holds a run; continue it with --resume {path} (resume=True), "
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

    def create(self, config: TrainConfig, dataset: Dataset, resume_rows: list[dict] | None = None) -> None:
        if self.path is None:
            return
        make_dir(self.path, "out_dir")
        io.atomic_write_text(self.path / io.CONFIG, json.dumps(
            {"config": config.to_dict(), **data_record(config, dataset)}, indent=2) + "\n")
        self.history = io.HistoryWriter(self.path / io.HISTORY, keep=resume_rows)

    def append_history(self, row: dict[str, Any]) -> None:
        if self.path is not None:
            self.history.append(row)

    def save(self, name: str, W: np.ndarray, b: np.ndarray, meta: dict[str, Any]) -> None:
        if self.path is None:
            return
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        io.save_model(target, W, b, meta)


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
    progress: bool = True, warn: Callable[[str], None] = _stderr_warning,
) -> Dataset:
    """The dataset a run directory (or a model file) was trained on, as recorded.

    With ``data_dir``, that data is used instead; ``warn`` is told when its identity
    differs from the recorded one. Without it, the recorded location is loaded and
    must hold the recorded dataset; MNIST, being fetchable and verifiable anywhere,
    falls back to the usual place (``$LOGREG_MNIST_DATA_DIR``, the user cache)
    when its recorded location is gone. Files that record nothing use the usual place.

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
        data = load_mnist(data_dir, download=download, valid_size=valid_size, progress=progress)
        if identity is not None and data.identity != identity:
            warn(f"{target} was trained on {title}, using {data.title} from {data_dir} as asked")
        return data
    source = rec.get("data_source")
    if source is not None and (identity != "mnist" or Path(source).exists()):
        if not Path(source).exists():
            raise DataError(f"{target} was trained on {title} from {source}, which is not there now; "
                            "pass --data-dir DIR (data_dir=) with that dataset")
        try:
            data = load_mnist(source, download=False, valid_size=valid_size, progress=progress)
        except DataError as e:
            raise DataError(f"{target} was trained on {title} from {source}, which cannot be loaded now "
                            f"({e}); pass --data-dir DIR (data_dir=) with that dataset") from None
    else:
        data = load_mnist(None, download=download, valid_size=valid_size, progress=progress)
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
