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
