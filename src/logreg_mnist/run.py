"""One training run's record (:class:`History`) and its directory (:class:`RunDir`).

Shared by every optimiser, so that SGD, CG and L-BFGS runs look the same on disk.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import persistence as io
from .config import TrainConfig
from .data import Dataset


@dataclass
class History:
    """What a run did: one row per epoch and the best model's figures.

    Attributes:
        rows: dicts with epoch, iteration, train_nll, valid_error, test_error
            (None where not measured), best_valid_error, elapsed (seconds).
        best_valid_error, test_error: fractions; test_error is measured at the best.
        best_epoch, best_iteration: where the best model was found (iteration is
            counted in minibatches from 0, as in the chapter).
        epochs: epochs run. seconds: wall time, resumed runs included.
        stopped_by: "patience", "n_epochs", "max_iter", "converged" or "dry_run".
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    best_valid_error: float = math.inf
    test_error: float = math.nan
    best_epoch: int = 0
    best_iteration: int = -1
    epochs: int = 0
    seconds: float = 0.0
    stopped_by: str = ""


class RunDir:
    """The files of one run (see :mod:`logreg_mnist.persistence`); None writes nothing."""

    def __init__(self, path: str | os.PathLike | None):
        self.path = Path(path) if path is not None else None

    def create(self, config: TrainConfig, dataset: Dataset, resume_rows: list[dict] | None = None,
               **runtime: Any) -> None:
        """Write ``config.json`` (with ``runtime`` choices such as the engine beside the
        config, which they do not change) and start the history."""
        if self.path is None:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        io.atomic_write_text(self.path / io.CONFIG, json.dumps(
            {"config": config.to_dict(), "dataset": dataset.identity, "data_source": str(dataset.source),
             **runtime}, indent=2) + "\n")
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
    return {"config": config.to_dict(), "dataset": data.identity, **figures}
