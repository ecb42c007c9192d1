"""The one way a run is written: :class:`RunRecorder`, for SGD and the full-batch optimisers alike.

A run records, through its recorder, in this order: its start (``config.json`` and
the history's first rows), then as it goes each new best model, each epoch's (or
iteration's) history row, the snapshots ``config.snapshot_every`` asks for and, for
SGD, the checkpoint it resumes from; and at its end, its finish. What the data
were (:func:`~logreg_mnist.run.provenance.data_record`) is worked out once, when
the run starts, and every file carries that same record.

Model writes may be coalesced (SGD): every file atomic, but not every epoch. A new
best model and the end-of-epoch checkpoint are written when at least
:data:`SAVE_INTERVAL` seconds have passed since the last write, at the end of the
run, and when the run is interrupted or fails; in between, the latest of each waits
in memory. Writing (and syncing) both after every epoch cost more than the training
itself in a fast run. A crash loses at most the last interval; ``--resume`` replays
it and ends where an uninterrupted run ends.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any

import numpy as np

from ..config import TrainConfig
from ..data import Dataset
from ..errors import LogregMnistError
from ..persistence import BEST, CHECKPOINT, SNAPSHOTS
from .directory import RunDir
from .history import History
from .provenance import data_record, scored_counts

SAVE_INTERVAL = 2.0  # seconds between coalesced writes of the best model and the checkpoint

_Model = tuple[np.ndarray, np.ndarray, dict[str, Any]]  # W, b and the file's metadata


class RunRecorder:
    """Records one run in its directory (a :class:`RunDir`; one without a path writes nothing).

    Made when the run starts, which writes ``config.json`` and starts ``history.jsonl``.

    Args:
        run: the run's directory, owned (locked) by the caller for the whole run.
        config: the run's configuration.
        data: the dataset (its record is made here, once).
        rows: the history rows a resumed run keeps (None: a new history).
        coalesce: write models at most every :data:`SAVE_INTERVAL` seconds (SGD);
            False writes each one at once (cg, lbfgs).
        runtime: run-time choices recorded beside the config (``engine="fused"``).

    Attributes:
        history: the run's :class:`History`; its rows are those recorded, and the
            driver fills in its figures.
    """

    def __init__(
        self,
        run: RunDir,
        config: TrainConfig,
        data: Dataset,
        *,
        rows: list[dict[str, Any]] | None = None,
        coalesce: bool = True,
        **runtime: Any,
    ):
        self.run = run
        self.config = config
        self.coalesce = coalesce
        self._config = config.to_dict()
        self._identity = data.identity
        self._record = data_record(config, data)  # the one record of the data, for every file
        n_valid, n_test = scored_counts(data, config)
        self.history = History(rows=list(rows or []), n_valid=n_valid, n_test=n_test)
        self._last_write = -math.inf
        self._best: _Model | None = None
        self._checkpoint: _Model | None = None
        run.create(config, self._record, self.history.rows, **runtime)

    def meta(self, **figures: Any) -> dict[str, Any]:
        """A model file's metadata: the config, the data record and ``figures``."""
        return {"config": self._config, **self._record, **figures}

    def best(
        self, W: np.ndarray, b: np.ndarray, *, epoch: int, iteration: int, valid_error: float, test_error: float
    ) -> None:
        """A new best model, ``W`` (n_in, n_out) and ``b`` (n_out,), found at ``epoch`` (or the
        full-batch iteration) after ``iteration``, with its validation and test errors."""
        self._best = (W, b, self.meta(epoch=epoch, iteration=iteration, valid_error=valid_error, test_error=test_error))
        self._maybe_flush()

    def row(self, row: dict[str, Any]) -> None:
        """One epoch's (or iteration's) history row, kept in :attr:`history` and appended to the file."""
        self.history.rows.append(row)
        self.run.append_history(row)

    def snapshot(self, W: np.ndarray, b: np.ndarray, *, epoch: int, iteration: int, valid_error: float | None) -> None:
        """The model at the end of ``epoch``, written when ``config.snapshot_every`` asks for it."""
        every = self.config.snapshot_every
        if every and epoch % every == 0:
            self.run.save(
                f"{SNAPSHOTS}/epoch-{epoch:04d}.safetensors",
                W,
                b,
                self.meta(epoch=epoch, iteration=iteration, valid_error=valid_error),
            )

    def checkpoint(self, W: np.ndarray, b: np.ndarray, state: dict[str, Any], *, final: bool) -> None:
        """The current parameters and the SGD driver's ``state``, to resume from; ``final``: the
        run's last, written at once."""
        self._checkpoint = (W, b, {"state": state, "dataset": self._identity, "config": self._config})
        self.flush() if final else self._maybe_flush()

    def flush(self) -> None:
        """Write the models that wait (the best, then the checkpoint)."""
        if self._best is not None:
            self.run.save(BEST, *self._best)
        if self._checkpoint is not None:
            self.run.save(CHECKPOINT, *self._checkpoint)
        self._best = self._checkpoint = None
        self._last_write = time.perf_counter()

    def failed(self) -> None:
        """The run failed (a divergence, a data file that changed, a full disk): keep the last
        good best model and checkpoint where they can still be written."""
        with contextlib.suppress(LogregMnistError, OSError):
            self.flush()

    def interrupted(self, epoch: int) -> str | None:
        """The run was interrupted in ``epoch``: write what waits; the line telling the user what
        is kept and how to go on (None without a directory)."""
        self.flush()
        return self.run.interrupted(epoch) if self.run.path is not None else None

    def finish(self, **figures: Any) -> History:
        """The run's end: write what waits; :attr:`history` with ``figures`` (its
        :class:`History` fields: epochs, seconds, stopped_by...) set."""
        self.flush()
        for name, value in figures.items():
            if not hasattr(self.history, name):
                raise TypeError(f"finish: expected History fields, found {name!r}")
            setattr(self.history, name, value)
        return self.history

    def _maybe_flush(self) -> None:
        if not self.coalesce or time.perf_counter() - self._last_write >= SAVE_INTERVAL:
            self.flush()
