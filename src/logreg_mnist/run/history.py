"""What a run did (:class:`History`): one row per epoch and the best model's figures.

Shared by every optimiser, so that SGD, CG and L-BFGS runs look the same on disk;
:func:`load_history` reads it back from a run directory.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..persistence import BEST, load_model, read_history


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
        stopped_by: "patience" or "n_epochs" (SGD); "max_iter", "converged" (SciPy reports
            success) or "stopped" (SciPy stopped early without success, and said why) for
            cg and lbfgs; "dry_run" ("" when loaded from a directory by :func:`load_history`).
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

        return (
            f"History({len(self.rows)} rows, epochs={self.epochs}, best_epoch={self.best_epoch}, "
            f"best_valid_error={pct(self.best_valid_error, self.n_valid)}, "
            f"test_error={pct(self.test_error, self.n_test)}, stopped_by={self.stopped_by!r})"
        )


def load_history(run_dir: str | os.PathLike) -> History:
    """The :class:`History` of a run directory, from its ``history.jsonl`` and best model.

    Its ``rows`` feed :func:`logreg_mnist.plots.learning_curves_figure`. ``stopped_by``
    is not recorded on disk and is left empty.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: expected a run directory, found {'a file' if run_dir.exists() else 'nothing'}")
    history = History(rows=read_history(run_dir))
    rows = history.rows
    if (run_dir / BEST).is_file():
        _, meta = load_model(run_dir / BEST)
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
