"""A training run on disk, one job a module.

- :mod:`.directory`: the run directory (:class:`RunDir`) and its lock, what makes a
  directory a run, clearing one, the messages that say what is kept;
- :mod:`.provenance`: what a run remembers about its data, and loading that data again;
- :mod:`.history`: what a run did (:class:`History`), read back by :func:`load_history`;
- :mod:`.recorder`: :class:`RunRecorder`, through which every run (SGD, cg, lbfgs) is written.
"""

from .directory import LOCK, PLOTS, RUN_FILES, RunDir, check_run_target, clear_run
from .history import History, load_history
from .provenance import (
    class_names_for,
    data_record,
    load_run_data,
    model_meta,
    recorded_data,
    scored,
    scored_counts,
)
from .recorder import RunRecorder

__all__ = [
    "LOCK",
    "PLOTS",
    "RUN_FILES",
    "History",
    "RunDir",
    "RunRecorder",
    "check_run_target",
    "class_names_for",
    "clear_run",
    "data_record",
    "load_history",
    "load_run_data",
    "model_meta",
    "recorded_data",
    "scored",
    "scored_counts",
]
