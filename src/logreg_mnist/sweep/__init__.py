"""Model selection as the chapter describes it, on a Dask cluster.

Each candidate (a learning rate, a penalty, a batch size, an initialisation, an
optimiser...) is trained on the same split with early stopping; candidates are
compared by their best validation error; only the chosen one's test error is
reported as the result.

The pieces, one module each:

* ``plan``: a :class:`SweepPlan` (fixed settings, the trials, where the data are),
  made by :func:`grid_plan` or :func:`random_plan` and validated before anything starts;
* ``trial``: :func:`run_trial`, a pure function of (configuration, data location,
  train options) run on a Dask worker: it trains into a scratch directory there and
  returns a small record holding the figures and the run directory's files;
* ``directory``: the sweep directory (``sweep.json``, ``trials.csv``, ``trials/``,
  ``best``), written by the driver alone and read by :func:`load_plan` and
  :func:`read_results`;
* ``cluster``: :func:`dask_client`, to a running scheduler or a local cluster;
* ``driver``: :func:`run_sweep`, which submits the trials with ``Client.submit``, takes
  them in the order they finish (``as_completed``) and records each, and the lines it
  prints. The same code serves a local cluster and a remote scheduler, and no shared
  file system is assumed.

Dask and distributed are imported inside the functions that need them, so reading a
sweep (plots, tables) does not import them.
"""

from __future__ import annotations

from .cluster import dask_client, local_worker_count
from .directory import BEST, PLAN, TRIALS, TRIALS_CSV, is_sweep_dir, load_plan, new_sweep_dir, ranking, read_results
from .driver import SweepResult, chosen_line, run_sweep, summary_table
from .plan import (
    FORMAT,
    DataSource,
    Range,
    SweepPlan,
    Trial,
    format_value,
    grid_plan,
    make_plan,
    parse_grid,
    parse_ranges,
    random_plan,
    train_options_for,
)
from .trial import data_loads, run_trial

__all__ = [
    "BEST",
    "FORMAT",
    "PLAN",
    "TRIALS",
    "TRIALS_CSV",
    "DataSource",
    "Range",
    "SweepPlan",
    "SweepResult",
    "Trial",
    "chosen_line",
    "dask_client",
    "data_loads",
    "format_value",
    "grid_plan",
    "is_sweep_dir",
    "load_plan",
    "local_worker_count",
    "make_plan",
    "new_sweep_dir",
    "parse_grid",
    "parse_ranges",
    "random_plan",
    "ranking",
    "read_results",
    "run_sweep",
    "run_trial",
    "summary_table",
    "train_options_for",
]
