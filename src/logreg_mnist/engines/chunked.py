"""The NumPy reference arithmetic on data that does not fit: splits read in chunks of rows.

:class:`ChunkedNumpyEngine` does exactly what :class:`logreg_mnist.engines.numpy.NumpyEngine`
does (the same :func:`~logreg_mnist.model.cost_and_grad` on the same float32 values,
``uint8 * (1/256)``, minibatch after minibatch in the same order), so its parameters
are bit-identical to the reference's. Only the data differ: the uint8 splits are
never resident as a whole; :class:`logreg_mnist.data.stream.Rows` reads chunks of
whole minibatches from the IDX file into one reused buffer, and each minibatch is
converted to float32 when it is used. Resident: one uint8 buffer per split of at
most the chunk size, plus one float32 minibatch. Threading: NumPy's BLAS.
"""

from __future__ import annotations

import numpy as np

from ..data import Dataset
from ..data.mnist import PIXEL_SCALE
from ..data.stream import Rows, chunk_bytes_for
from ..model import logits
from .base import SGDSettings
from .numpy import EVAL_ROWS, NumpySGD


class ChunkedNumpyEngine(NumpySGD):
    """SGD and error counts on splits read in chunks (see the module docstring).

    Args:
        data: the dataset; its uint8 ``pixels`` are used (memory-mapped IDX files
            are read by position, in-memory arrays are sliced).
        settings: as for the NumPy engine.
        threads: not used (one thread, plus the reader; BLAS uses its own pool).
        max_resident: the memory budget in bytes (None: the default): each split is
            read in chunks of a sixth of it (rounded down to whole minibatches for
            training, at least one; see :func:`~logreg_mnist.data.stream.chunk_bytes_for`);
            data within the budget are used as one chunk.

    Attributes:
        tolerance: 0: the reference's arithmetic on the same values.
    """

    name = "numpy"  # the reference arithmetic; only the data are read differently
    threads = 1  # plus the reader thread; BLAS uses its own pool

    def __init__(
        self, data: Dataset, settings: SGDSettings, *, threads: int | None = None, max_resident: int | None = None
    ):
        self._setup(
            {s: data.split(s).labels for s in ("train", "valid", "test")}, data.n_features, data.n_classes, settings
        )
        chunk = chunk_bytes_for(data, max_resident, 1)
        B = settings.batch_size
        self._rows = {
            s: Rows.for_split(data.split(s), chunk, multiple=B if s == "train" else 1)
            for s in ("train", "valid", "test")
        }
        self._n_train_rows = min(len(self._y["train"]), self.n_train_batches * B)
        self._xbuf = np.empty((B, data.n_features), self.dtype)  # one float minibatch, reused

    def _float(self, pixels: np.ndarray) -> np.ndarray:
        """(k, n_in) uint8 -> (k, n_in) float ``pixels / 256`` (exact, as ``Split.images`` computes it),
        in a reused buffer valid until the next call."""
        if len(pixels) > len(self._xbuf):
            self._xbuf = np.empty((len(pixels), pixels.shape[1]), self.dtype)
        return np.multiply(pixels, self.dtype.type(PIXEL_SCALE), out=self._xbuf[: len(pixels)], dtype=self.dtype)

    def train(self, batches: range) -> tuple[float, int]:
        B, y = self.batch_size, self._y["train"]
        total, count = 0.0, 0
        stop = min(batches.stop * B, self._n_train_rows)
        for start, pixels in self._rows["train"].chunks(batches.start * B, stop):
            for a in range(0, len(pixels), B):  # the chunk holds whole minibatches
                xb = self._float(pixels[a : a + B])  # (B, n_in)
                yb = y[start + a : start + a + len(xb)]
                total += self._step(xb, yb)
                count += len(yb)
        return total, count

    def count_errors(self, split: str) -> tuple[int, int]:
        n, y, wrong = self.counted(split), self._y[split], 0
        for start, pixels in self._rows[split].chunks(0, n):
            for a in range(0, len(pixels), EVAL_ROWS):  # bounds the float32 copy and the logits
                x = self._float(pixels[a : a + EVAL_ROWS])  # (k, n_in)
                predicted = np.argmax(logits(self.W, self.b, x), axis=1)
                wrong += int(np.count_nonzero(predicted != y[start + a : start + a + len(x)]))
        return wrong, n
