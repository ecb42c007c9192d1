"""The seam between the training driver and the arithmetic: the :class:`Engine` protocol.

The early-stopping driver (:mod:`logreg_mnist.train`) talks to an engine only
through this small protocol, so a faster engine (another device, another
library) can be added without touching the driver. An engine owns the resident
data and the current parameters; the driver pulls the parameters out only when
it saves them.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ..errors import ConfigError


class Engine(Protocol):
    """What the training driver needs from an engine.

    Attributes:
        name: the registry name (``"numpy"``, ``"fused"``, ...), recorded in a run's
            ``config.json``.
        threads: how many threads it computes with.
        n_train_batches: minibatches per epoch.
    """

    name: str
    threads: int
    n_train_batches: int

    def set_params(self, W: np.ndarray, b: np.ndarray) -> None:
        """Load ``W`` (n_in, n_out) and ``b`` (n_out,) as the current parameters."""

    def get_params(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the current ``W`` and ``b`` as NumPy arrays of the engine's dtype."""

    def train(self, batches: range) -> tuple[float, int]:
        """One SGD step per training minibatch index in ``batches``, in order.

        Returns:
            (summed per-example NLL before each step, number of examples).
        """

    def count_errors(self, split: str) -> tuple[int, int]:
        """(misclassified, counted) on ``"valid"`` or ``"test"`` with the current parameters."""


def n_batches(n: int, batch_size: int, drop_last: bool) -> int:
    """Minibatches per epoch over ``n`` examples; refuses a batch larger than the data when dropping."""
    count = n // batch_size if drop_last else -(-n // batch_size)
    if count == 0:
        raise ConfigError(f"batch_size: expected at most the {n:,} training examples when partial "
                          f"minibatches are dropped, found {batch_size:,}")
    return count


def counted(n: int, batch_size: int, drop_last: bool) -> int:
    """How many of ``n`` examples are scored: whole minibatches only when ``drop_last``."""
    return (n // batch_size) * batch_size if drop_last else n


class ThreadChooser:
    """Chooses, call by call, between ``threads`` and one thread, by measured speed.

    On an idle machine several threads are faster; on a machine whose cores are busy
    with other work, threads that must meet twice per minibatch wait for each other's
    time slices, and one thread is several times faster. Engines whose results do not
    depend on the thread count use this to adapt while they run: each call runs with
    the choice that has been faster (an exponential average of seconds per unit of
    work), and the other choice is measured again after :attr:`PROBE_EVERY` calls, an
    interval that doubles (up to :attr:`PROBE_MAX`) each time the probe confirms the
    choice, and starts again from :attr:`PROBE_EVERY` when the preference changes.

    Args:
        threads: the most threads to use.
        fixed: always use ``threads`` (the user asked for that many).
    """

    PROBE_EVERY = 8
    PROBE_MAX = 64
    _DECAY = 0.5

    def __init__(self, threads: int, *, fixed: bool = False):
        self.threads = threads
        self.options = (threads,) if fixed or threads == 1 else (threads, 1)
        self._speed: dict[int, float] = {}
        self._since_probe = 0
        self._interval = self.PROBE_EVERY
        self._preferred: int | None = None

    def pick(self) -> int:
        """The thread count for the next call."""
        unmeasured = [t for t in self.options if t not in self._speed]
        if unmeasured:
            return unmeasured[0]
        best = self.current
        if best != self._preferred:  # a new preference: probe often again
            self._preferred, self._interval, self._since_probe = best, self.PROBE_EVERY, 0
        self._since_probe += 1
        if len(self.options) > 1 and self._since_probe >= self._interval:
            self._since_probe = 0
            self._interval = min(2 * self._interval, self.PROBE_MAX)
            return next(t for t in self.options if t != best)
        return best

    def record(self, threads: int, seconds: float, work: int) -> None:
        """``work`` units (e.g. minibatches) took ``seconds`` with ``threads``."""
        if work <= 0:
            return
        per = seconds / work
        old = self._speed.get(threads)
        self._speed[threads] = per if old is None else self._DECAY * old + (1 - self._DECAY) * per

    def measured(self, threads: int) -> bool:
        """Whether ``threads`` has been timed yet."""
        return threads in self._speed

    @property
    def current(self) -> int:
        """The thread count now preferred."""
        measured = [t for t in self.options if t in self._speed]
        return min(measured, key=self._speed.__getitem__) if measured else self.options[0]
