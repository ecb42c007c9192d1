"""The reference engine: the chapter's minibatch step written with NumPy.

Data layout: the splits stay as the dataset holds them, uint8 pixels (n, n_in)
(memory-mapped when the data cache is used); each minibatch is converted to the
engine's dtype as ``pixels * 1/256`` when it is used, which is exact, so the
results are those of float32 (or float64) images without a float copy of the
splits ever being made. Datasets with float pixels that are not multiples of
1/256 (some legacy pickles) are used as their float images.

Threading: the BLAS library's, for ``x @ W`` and ``x.T @ z``, limited by the
driver (threadpoolctl) to the engine's ``threads`` while training. By default
that is one thread: these products (600 x 784 x 10) gain little from more, a
BLAS that spins threads on cores busy with other work is several times (up to
10x) slower, and OpenBLAS's results change in the last bits with its thread count,
which a reference should not. ``threads=N`` asks for N.

Agreement: this engine *is* the reference (:func:`logreg_mnist.model.cost_and_grad`).
"""

from __future__ import annotations

import mmap

import numpy as np

from ..data import Dataset
from ..data.mnist import PIXEL_SCALE
from ..model import cost_and_grad, logits
from .base import SGDSettings, Tolerance

EVAL_ROWS = 10_000  # rows scored at once: bounds the (rows, n_out) logits buffer


class NumpySGD:
    """What the NumPy engines share: the parameters, the reference SGD step, the counts.

    Subclasses set up their data and call :meth:`_setup`; both compute every step with
    :func:`~logreg_mnist.model.cost_and_grad` on the same float values, so their
    parameters are bit-identical (``tolerance`` 0).
    """

    tolerance = Tolerance()  # the reference's own arithmetic: bit-identical

    def _setup(self, labels: dict[str, np.ndarray], n_in: int, n_out: int, settings: SGDSettings) -> None:
        self.settings = settings
        self.dtype = settings.dtype
        self.batch_size = settings.batch_size
        self.learning_rate = self.dtype.type(settings.learning_rate)
        self.l1, self.l2 = settings.l1, settings.l2
        self._y = labels
        self.n_train_batches = settings.n_batches(len(labels["train"]))
        self.W = np.zeros((n_in, n_out), self.dtype)
        self.b = np.zeros(n_out, self.dtype)

    def set_params(self, W: np.ndarray, b: np.ndarray) -> None:
        self.W = np.array(W, dtype=self.dtype)
        self.b = np.array(b, dtype=self.dtype)

    def get_params(self) -> tuple[np.ndarray, np.ndarray]:
        return self.W.copy(), self.b.copy()

    def counted(self, split: str) -> int:
        """How many examples of ``split`` are scored."""
        return self.settings.counted(len(self._y[split]))

    def _step(self, xb: np.ndarray, yb: np.ndarray) -> float:
        """One minibatch's SGD update of ``W`` and ``b``; returns its summed NLL."""
        _, nll_sum, gW, gb = cost_and_grad(self.W, self.b, xb, yb, self.l1, self.l2)
        self.W -= self.learning_rate * gW
        self.b -= self.learning_rate * gb
        return nll_sum


class NumpyEngine(NumpySGD):
    """The reference engine: NumPy on the CPU.

    Args:
        data: the dataset; its uint8 pixels are used (float images only when it has no pixels).
        settings: batch size, learning rate, penalties, drop_last, dtype.
        threads: BLAS threads the driver allows while training (None: one; see the
            module docstring).
        max_resident: not used: this engine keeps the splits as the dataset holds them
            (:func:`~logreg_mnist.engines.make_engine` chooses the chunked form,
            :class:`~logreg_mnist.engines.chunked.ChunkedNumpyEngine`, for data over the budget).

    Attributes:
        tolerance: 0: this engine is the reference.
    """

    name = "numpy"

    def __init__(
        self, data: Dataset, settings: SGDSettings, *, threads: int | None = None, max_resident: int | None = None
    ):
        self.threads = threads or 1
        self._x = {}
        for name in ("train", "valid", "test"):
            split = data.split(name)
            self._x[name] = _in_memory(split.pixels if split.pixels is not None else split.images)
        self._setup(
            {name: _in_memory(data.split(name).labels) for name in ("train", "valid", "test")},
            self._x["train"].shape[1],
            data.n_classes,
            settings,
        )

    def _rows(self, split: str, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of ``split`` as the engine's dtype: (rows, n_in)."""
        x = self._x[split][start:stop]
        if x.dtype == np.uint8:
            return np.multiply(x, self.dtype.type(PIXEL_SCALE), dtype=self.dtype)
        return np.asarray(x, dtype=self.dtype)

    def train(self, batches: range) -> tuple[float, int]:
        y = self._y["train"]
        total, count = 0.0, 0
        for i in batches:
            start, stop = i * self.batch_size, (i + 1) * self.batch_size
            yb = y[start:stop]
            total += self._step(self._rows("train", start, stop), yb)  # (B, n_in)
            count += len(yb)
        return total, count

    def count_errors(self, split: str) -> tuple[int, int]:
        n = self.counted(split)
        y = self._y[split]
        wrong = 0
        for start in range(0, n, EVAL_ROWS):
            stop = min(start + EVAL_ROWS, n)
            pred = np.argmax(logits(self.W, self.b, self._rows(split, start, stop)), axis=1)
            wrong += int(np.count_nonzero(pred != y[start:stop]))
        return wrong, n


def _in_memory(a: np.ndarray) -> np.ndarray:
    """``a``, copied into memory when it is a view of a memory-mapped file.

    A mapped file that is truncated while it is read (another process rewriting a cache)
    kills the process with SIGBUS; the data this engine holds fit in its memory budget
    (larger data go to the chunked engine, which reads with ``pread``), so it reads them once.
    """
    base: object = a
    while base is not None:
        if isinstance(base, (np.memmap, mmap.mmap)):
            return np.array(a, copy=True)
        base = getattr(base, "base", None)
    return a
