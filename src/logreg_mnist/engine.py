"""Engines: where the minibatch updates and the error counts are computed.

The early-stopping driver (:mod:`logreg_mnist.train`) talks to an engine only
through the small :class:`Engine` protocol, so a faster engine (another device,
another library) can be added without touching the driver. An engine owns the
resident data and the current parameters; the driver pulls the parameters out
only when it saves them.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from .data import Dataset
from .errors import ConfigError
from .model import cost_and_grad, logits

_EVAL_CHUNK = 10_000  # rows scored at once: bounds the (rows, n_out) logits buffer


class Engine(Protocol):
    """What the training driver needs from an engine."""

    n_train_batches: int

    def set_params(self, W: np.ndarray, b: np.ndarray) -> None:
        """Load ``W`` (n_in, n_out) and ``b`` (n_out,) as the current parameters."""

    def get_params(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the current ``W`` and ``b`` as NumPy arrays."""

    def train(self, batches: range) -> tuple[float, int]:
        """One SGD step per training minibatch index in ``batches``, in order.

        Returns:
            (summed per-example NLL before each step, number of examples).
        """

    def count_errors(self, split: str) -> tuple[int, int]:
        """(misclassified, counted) on ``"valid"`` or ``"test"`` with the current parameters."""


class NumpyEngine:
    """The reference engine: NumPy on the CPU, data resident as float32 arrays.

    Args:
        data: the dataset; its float32 images are used.
        batch_size: examples per minibatch.
        learning_rate, l1, l2: the SGD step ``p -= learning_rate * dcost/dp``.
        drop_last: drop the examples that do not fill a whole minibatch, in
            training and in evaluation (the chapter's behaviour); otherwise the last
            training minibatch is shorter and every example is scored.
        dtype: arithmetic precision.
    """

    def __init__(
        self, data: Dataset, *, batch_size: int, learning_rate: float, l1: float = 0.0,
        l2: float = 0.0, drop_last: bool = False, dtype=np.float32,
    ):
        self.dtype = np.dtype(dtype)
        self.batch_size = batch_size
        self.learning_rate = self.dtype.type(learning_rate)
        self.l1, self.l2 = l1, l2
        self.drop_last = drop_last
        self._x = {name: np.ascontiguousarray(data.split(name).images, dtype=self.dtype)
                   for name in ("train", "valid", "test")}
        self._y = {name: data.split(name).labels for name in ("train", "valid", "test")}
        n = len(self._y["train"])
        self.n_train_batches = n // batch_size if drop_last else -(-n // batch_size)
        if self.n_train_batches == 0:
            raise ConfigError(f"batch_size: expected at most the {n:,} training examples when partial "
                              f"minibatches are dropped, found {batch_size:,}")
        n_in, n_out = self._x["train"].shape[1], data.n_classes
        self.W = np.zeros((n_in, n_out), self.dtype)
        self.b = np.zeros(n_out, self.dtype)

    def set_params(self, W: np.ndarray, b: np.ndarray) -> None:
        self.W = np.array(W, dtype=self.dtype)
        self.b = np.array(b, dtype=self.dtype)

    def get_params(self) -> tuple[np.ndarray, np.ndarray]:
        return self.W.copy(), self.b.copy()

    def train(self, batches: range) -> tuple[float, int]:
        x, y = self._x["train"], self._y["train"]
        total, count = 0.0, 0
        for i in batches:
            xb = x[i * self.batch_size : (i + 1) * self.batch_size]  # (B, n_in)
            yb = y[i * self.batch_size : (i + 1) * self.batch_size]
            _, nll_sum, gW, gb = cost_and_grad(self.W, self.b, xb, yb, self.l1, self.l2)
            self.W -= self.learning_rate * gW
            self.b -= self.learning_rate * gb
            total += nll_sum
            count += len(yb)
        return total, count

    def counted(self, split: str) -> int:
        """How many examples of ``split`` are scored."""
        n = len(self._y[split])
        return (n // self.batch_size) * self.batch_size if self.drop_last else n

    def count_errors(self, split: str) -> tuple[int, int]:
        n = self.counted(split)
        x, y = self._x[split], self._y[split]
        wrong = 0
        for start in range(0, n, _EVAL_CHUNK):
            stop = min(start + _EVAL_CHUNK, n)
            wrong += int(np.count_nonzero(np.argmax(logits(self.W, self.b, x[start:stop]), axis=1) != y[start:stop]))
        return wrong, n
