"""The seam between the training driver and the arithmetic: the :class:`Engine` protocol.

The early-stopping driver (:mod:`logreg_mnist.train`) talks to an engine only
through this small protocol, so a faster engine (another device, another
library) can be added without touching the driver. An engine owns the resident
data and the current parameters; the driver pulls the parameters out only when
it saves them.

Every engine is made the same way, ``EngineClass(data, settings, *, threads=None,
max_resident=None)``, with :class:`SGDSettings` (made from a run's
:class:`~logreg_mnist.config.TrainConfig` by :meth:`SGDSettings.from_config`), and
counts its minibatches and scored examples with :func:`n_batches` and :func:`counted`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..config import TrainConfig

DTYPES = ("float32", "float64")
_FLOAT32 = np.dtype(np.float32)


@dataclass(frozen=True)
class Tolerance:
    """An engine's stated agreement with the NumPy reference, per dtype: ``(rtol, atol)``.

    After the same minibatches from the same parameters, an engine's ``W`` and ``b``
    agree with the reference's as ``numpy.testing.assert_allclose(W, W_ref, rtol, atol)``
    does, its error counts exactly, and its summed training NLL to the rounding of a sum
    in that dtype (relative 1e-5 in float32, 1e-12 in float64). ``Tolerance()`` (all 0)
    states bit-identical results, the NLL sums included.

    Example:
        >>> Tolerance(float32=(1e-5, 1e-6)).of("float32")
        (1e-05, 1e-06)
    """

    float32: tuple[float, float] = (0.0, 0.0)
    float64: tuple[float, float] = (0.0, 0.0)

    def of(self, dtype: np.dtype | str) -> tuple[float, float]:
        """``(rtol, atol)`` for arithmetic in ``dtype``."""
        return getattr(self, np.dtype(dtype).name)


class Engine(Protocol):
    """What the training driver needs from an engine.

    Attributes:
        name: the registry name (``"numpy"``, ``"fused"``, ...), recorded in a run's
            ``config.json``.
        threads: how many threads it computes with.
        n_train_batches: minibatches per epoch (:func:`n_batches`).
        tolerance: the engine's stated agreement with the NumPy reference (:class:`Tolerance`);
            ``tests/test_engine_conformance.py`` holds every engine to it.
    """

    name: str
    threads: int
    n_train_batches: int
    tolerance: ClassVar[Tolerance]

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
        """(misclassified, counted) on ``"valid"`` or ``"test"`` with the current parameters;
        counted is :func:`counted` of the split's size."""


@dataclass(frozen=True)
class SGDSettings:
    """The SGD settings every engine is made with: the part of a run's config an engine computes.

    Attributes:
        batch_size: examples per minibatch (>= 1).
        learning_rate: the step ``p -= learning_rate * dcost/dp``.
        l1, l2: coefficients of ``sum|W|`` and ``sum W**2`` in the cost (``b`` is not penalised).
        drop_last: drop the examples that do not fill a whole minibatch, in training
            and in evaluation (the chapter's behaviour); otherwise the last training
            minibatch is shorter and every example is scored.
        dtype: the arithmetic's precision, float32 or float64 (stored as a NumPy dtype).

    Example:
        >>> SGDSettings(batch_size=600, learning_rate=0.13).n_batches(50_000)
        84
    """

    batch_size: int
    learning_rate: float
    l1: float = 0.0
    l2: float = 0.0
    drop_last: bool = False
    dtype: np.dtype = _FLOAT32

    def __post_init__(self) -> None:
        if (
            isinstance(self.batch_size, bool)
            or not isinstance(self.batch_size, (int, np.integer))
            or self.batch_size < 1
        ):
            raise ConfigError(f"batch_size: expected an integer >= 1, found {self.batch_size!r}")
        try:
            dtype = np.dtype(self.dtype)
        except TypeError:
            dtype = None
        if dtype is None or dtype.name not in DTYPES:
            raise ConfigError(f"dtype: expected one of {', '.join(DTYPES)}, found {self.dtype!r}")
        object.__setattr__(self, "dtype", dtype)

    @classmethod
    def from_config(cls, config: TrainConfig) -> SGDSettings:
        """The SGD settings of ``config`` (batch size, learning rate, penalties, drop_last, dtype)."""
        return cls(
            batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            l1=config.l1,
            l2=config.l2,
            drop_last=config.drop_last,
            dtype=np.dtype(config.dtype),
        )

    def n_batches(self, n: int) -> int:
        """Minibatches per epoch over ``n`` training examples (see :func:`n_batches`)."""
        return n_batches(n, self.batch_size, self.drop_last)

    def counted(self, n: int) -> int:
        """How many of ``n`` examples are scored (see :func:`counted`)."""
        return counted(n, self.batch_size, self.drop_last)


def n_batches(n: int, batch_size: int, drop_last: bool) -> int:
    """Minibatches per epoch over ``n`` examples; refuses a batch larger than the data when dropping."""
    count = n // batch_size if drop_last else -(-n // batch_size)
    if count == 0:
        raise ConfigError(
            f"batch_size: expected at most the {n:,} training examples when partial "
            f"minibatches are dropped, found {batch_size:,}"
        )
    return count


def counted(n: int, batch_size: int, drop_last: bool) -> int:
    """How many of ``n`` examples are scored: whole minibatches only when ``drop_last``."""
    return (n // batch_size) * batch_size if drop_last else n


class ThreadChooser:
    """Chooses, call by call, between ``threads`` and one thread (and any ``also``), by measured speed.

    On an idle machine several threads are faster; on a machine whose cores are busy
    with other work, threads that must meet twice per minibatch wait for each other's
    time slices, and one thread is several times faster. Engines whose results do not
    depend on the thread count use this to adapt while they run: each call runs with
    the choice that has been faster (an exponential average of seconds per unit of
    work), and another choice (each in turn) is measured again after :attr:`PROBE_EVERY`
    calls, an interval that doubles (up to :attr:`PROBE_MAX`) each time the probe
    confirms the choice, and starts again from :attr:`PROBE_EVERY` when the preference
    changes.

    Args:
        threads: the most threads to use.
        fixed: always use ``threads`` (the user asked for that many).
        also: other thread counts to try (e.g. one core fewer, left to a reader thread).
    """

    PROBE_EVERY = 8
    PROBE_MAX = 64
    _DECAY = 0.5

    def __init__(self, threads: int, *, fixed: bool = False, also: tuple[int, ...] = ()):
        self.threads = threads
        self.options = (threads,) if fixed else tuple(dict.fromkeys(t for t in (threads, *also, 1) if t >= 1))
        self._probed = 0  # probes so far: the next one measures the next other choice
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
            others = [t for t in self.options if t != best]
            self._probed += 1
            return others[self._probed % len(others)]
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
