"""One trial, run on a Dask worker: a pure function of (configuration, data location, train options).

:func:`run_trial` trains into a scratch directory on the worker and returns a small
record holding the figures and the run directory's files; the driver alone writes
them into the sweep directory. A worker process loads the data once for all its trials.
"""

from __future__ import annotations

import math
import os
import tempfile
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..config import TrainConfig
from ..errors import DataError, TrainingDivergedError
from .plan import DataSource

_DATA_LOCK = threading.Lock()  # a worker with several threads loads the data once, not once per thread


@lru_cache(maxsize=2)
def _worker_dataset(data_dir: str | None, valid_size: int, max_resident: int | None = None):
    """The dataset, loaded once per worker process (later trials reuse it)."""
    from ..data import load_mnist

    return load_mnist(data_dir, valid_size=valid_size, progress=False, max_resident=max_resident)


def data_loads() -> dict[str, int]:
    """How often this process loaded the data (``misses``) and reused it (``hits``)."""
    info = _worker_dataset.cache_info()
    return {"loads": info.misses, "reuses": info.hits}


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"pid {os.getpid()}"


def run_trial(config: dict[str, Any], data: DataSource, train_options: dict[str, Any] | None = None) -> dict:
    """Train one candidate in a scratch directory; return its figures and its run's files.

    A pure function of its arguments: the same configuration and data give the same
    figures on any worker (the training itself is deterministic).

    Args:
        config: a :class:`TrainConfig` as a dict.
        data: where to find the data, and their identity.
        train_options: extra keyword arguments of :func:`logreg_mnist.train.train`.

    Returns:
        ``epochs``, ``valid_error`` and ``test_error`` (fractions; NaN when the run
        diverged), ``n_valid`` and ``n_test`` (the examples they are over; None when
        diverged), ``seconds`` (training wall time), ``worker``, ``status`` ("ok" or
        "diverged") and ``files``: {path relative to the run directory: bytes}.

    Raises:
        DataError: the worker's data are not the dataset the plan names.
    """
    from ..persistence import HISTORY, read_history
    from ..train import train

    try:
        with _DATA_LOCK:
            dataset = _worker_dataset(data.data_dir, data.valid_size, (train_options or {}).get("max_resident"))
    except DataError as e:
        raise DataError(f"worker {_worker_name()}: {e}") from None
    if dataset.identity != data.identity:
        raise DataError(
            f"worker {_worker_name()}: the data at {dataset.source} are {dataset.identity}, "
            f"expected {data.identity}; give every worker the same files (--data-dir)"
        )
    cfg = TrainConfig.from_dict(config)
    with tempfile.TemporaryDirectory(prefix="logreg-mnist-trial-") as tmp:
        start = time.perf_counter()
        try:
            # one compute thread per trial unless asked: the workers are processes, one per core
            options = {"threads": 1, **(train_options or {})}
            _, history = train(dataset, cfg, tmp, **options)
            status, epochs = "ok", history.epochs
            valid_error, test_error = history.best_valid_error, history.test_error
            n_valid, n_test = history.n_valid, history.n_test
        except TrainingDivergedError:
            rows = read_history(tmp) if (Path(tmp) / HISTORY).is_file() else []
            status, epochs, valid_error, test_error = "diverged", (rows[-1]["epoch"] if rows else 0), math.nan, math.nan
            n_valid = n_test = None
        seconds = time.perf_counter() - start
        files = {
            p.relative_to(tmp).as_posix(): p.read_bytes()  # hidden names: scratch and lock files
            for p in sorted(Path(tmp).rglob("*"))
            if p.is_file() and not p.name.startswith(".")
        }
    return {
        "epochs": epochs,
        "valid_error": valid_error,
        "test_error": test_error,
        "n_valid": n_valid,
        "n_test": n_test,
        "seconds": seconds,
        "worker": _worker_name(),
        "status": status,
        "files": files,
    }
