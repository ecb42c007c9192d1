"""The fused CPU engine: one compiled pass per minibatch over the non-zero pixels.

Data layout: the uint8 pixels are read once, when the engine is made, into a
compressed-row form per split: for each image the column indices (uint16) and
values (uint8) of its non-zero pixels (MNIST: 19 % of the pixels, about 150 per
image; 3 bytes each, 23 MB for the 50,000 training images), and for the
training split also each minibatch's non-zeros by column (another 23 MB), which
the gradient pass reads. The pages of the uint8 arrays are released once copied
(:func:`~logreg_mnist.data.cache.release_pages`). Denser data cost more: 6 bytes
per non-zero pixel of the training split, 3 of the others (58 % non-zero: 3.5 and 1.7
times the pixels; no zero pixel: 6 and 3). The sparse form is used at every density
all the same: it trains faster than the uint8 rows read dense at every density
(measured on 30,000 MNIST rows made 19 % to 100 % non-zero, 1 or 2 threads: about
2 to 8 times as fast). What decides is memory: the engine counts the bytes its
layouts will take (:meth:`FusedEngine.held_bytes`, each split's density sampled from
10,000 of its rows), and data whose layouts exceed the memory
budget are read in chunks (:mod:`.fused_chunked`). Rows wider than 65,536 pixels
(column indices are uint16) are read dense, as their uint8 rows. No float copy
of the data is made; a pixel ``u`` enters the arithmetic as ``u / 256``, the
division applied once to each sum (exact: a power of two). ``W`` is kept as
(n_in, n_out rounded up to 64 bytes), 64-byte aligned, so that a row of it is one
cache line and whole SIMD vectors.

Arithmetic (the C kernel ``_fused``, AVX2 + FMA when the CPU has them, else a
baseline build with 16-byte vectors; ``LOGREG_MNIST_FUSED_SIMD=baseline``, read when
the kernel loads, chooses the baseline anyway, for tests): per
minibatch, the logits, softmax (a vectorised ``exp`` within 2 ulp in float32),
NLL and ``dcost/dlogits`` of each row (rows split across threads), then
``x^T dcost/dlogits`` over the minibatch's non-zero pixels by column, each thread
owning a block of W's rows (balanced by non-zero count), which it updates in
place; two barriers per minibatch, no reduction across threads.

Data over the memory budget are read in chunks by this engine's chunked form,
:class:`~logreg_mnist.engines.fused_chunked.ChunkedFusedEngine`, which calls the same
kernel on each chunk's layout, with the same results.

The kernel's boundary: it builds and owns each split's sparse form
(``_fused.Layout``), which Python cannot reach, and checks every other argument of
every call (dtype, shape, contiguity, labels in range, ...), raising ``ValueError`` or
``TypeError`` for a bad one; the calls below pass keyword arguments.

Threading: OpenMP, at most ``threads`` (default: the cores this process may run
on); within a call the threads meet at the kernel's own barrier, which spins
briefly, then sleeps, so that on a busy machine a waiting thread does not take its
partner's time (no environment variable is set). Every sum is taken in an order
that does not depend on the thread count, so results are bit-identical for any
thread count, and the engine can choose freely: unless ``threads`` is given, it
measures as it runs whether all threads or one is faster (one is, several times,
when other work keeps the cores busy) and uses the faster
(:class:`~logreg_mnist.engines.base.ThreadChooser`).

Agreement with the NumPy reference: the same float32 (or float64) formulas, with
sums taken in another order; after one epoch of the tutorial preset the
parameters agree within ``rtol=1e-5, atol=1e-6`` in float32 (``rtol=1e-12``
in float64), error counts are equal, and the tutorial preset gives the
chapter's 74 epochs and 7.489583 % (tests/test_engines.py, tests/test_train.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import numpy as np

from ..data import Dataset
from ..data.cache import release_pages
from ..errors import ConfigError
from .base import SGDSettings, ThreadChooser, Tolerance, counted, n_batches

try:
    from . import _fused
except ImportError:  # the optional extension was not built
    _fused = None  # type: ignore[assignment]

PROBE_BATCHES = 8  # minibatches run with a thread count being tried
DENSE_ABOVE = 1.0  # a split with more than this fraction of non-zero pixels is read dense: none (module docstring)
SPARSE_MAX_IN = 65_536  # wider rows are read dense (the sparse form's column indices are uint16)
CSC_MAX_BATCH = 65_536  # larger minibatches have no by-column copy (their rows are numbered in uint16)
DENSITY_SAMPLE = 10_000  # rows of a split whose non-zero pixels estimate its density (16 evenly spaced blocks)
# minibatches start to stop - 1 of the first n_rows rows of a layout: (layout, labels, start, stop, n_rows)
Segment = tuple["_fused.Layout", np.ndarray, int, int, int]


def available() -> bool:
    """Whether the compiled kernel is importable."""
    return _fused is not None


def kernel_info() -> dict:
    """What the compiled kernel was built with: ``{"openmp": bool, "simd": str}``."""
    if _fused is None:
        raise ConfigError(
            "engine 'fused': its compiled kernel is not built (reinstall with a C compiler: "
            "pip install -e .); use --engine numpy"
        )
    return _fused.info()


def _aligned_zeros(shape: tuple[int, ...], dtype: np.dtype, align: int = 64) -> np.ndarray:
    """A zeroed C-contiguous array whose data starts on an ``align``-byte boundary."""
    n = int(np.prod(shape))
    buffer = np.zeros(n * dtype.itemsize + align, np.uint8)
    start = -buffer.ctypes.data % align
    return buffer[start : start + n * dtype.itemsize].view(dtype).reshape(shape)


def sampled_density(pixels: np.ndarray) -> float:
    """The fraction of non-zero pixels among up to :data:`DENSITY_SAMPLE` rows of uint8 ``pixels``
    (all of them when there are no more; else 16 evenly spaced blocks of rows, read in order)."""
    n = len(pixels)
    if n <= DENSITY_SAMPLE:
        sample = np.asarray(pixels)
    else:
        block = DENSITY_SAMPLE // 16
        sample = np.concatenate([pixels[a : a + block] for a in np.linspace(0, n - block, 16).astype(np.int64)])
    return float(np.count_nonzero(sample)) / max(1, sample.size)


def sparse_form(n_in: int, density: float) -> bool:
    """Whether rows of ``n_in`` pixels, ``density`` of them non-zero, are kept sparse (as ``_fused.Layout``
    keeps them with ``dense_above=DENSE_ABOVE``)."""
    return n_in <= SPARSE_MAX_IN and density <= DENSE_ABOVE


def layout_bytes(n_rows: int, n_in: int, density: float, batch_size: int | None = None) -> int:
    """The bytes a ``_fused.Layout`` of ``n_rows`` rows of ``n_in`` pixels, ``density`` of them non-zero,
    takes; ``batch_size``: with the by-column copy of each minibatch (training). A dense layout holds
    the uint8 rows themselves: ``n_rows * n_in``."""
    if not sparse_form(n_in, density):
        return n_rows * n_in
    nnz = density * n_rows * n_in
    size = 3 * nnz + 8 * (n_rows + 1) + 8 * (n_in + 1)  # uint16 column and uint8 value; row offsets; column sums
    if batch_size is not None and batch_size <= CSC_MAX_BATCH:  # uint16 row and uint8 value; column offsets
        size += 3 * nnz + 8 * -(-n_rows // batch_size) * (n_in + 1)
    return int(np.ceil(size))


def _layout(pixels: np.ndarray) -> _fused.Layout:
    """One split's uint8 (n, n_in) pixels as the kernel reads them: a ``_fused.Layout``.

    Sparse (each row's non-zero pixels: uint16 columns, uint8 values, copied into memory
    the kernel owns) when n_in <= 65,536 (:func:`sparse_form`), else dense (the uint8 rows, read in place). Its ``sparse`` and
    ``density`` tell which; ``add_minibatch_columns(n_rows, batch_size)`` also keeps each
    minibatch's non-zeros by column, which the gradient pass reads (sparse layouts only).
    """
    return _fused.Layout(np.ascontiguousarray(pixels, dtype=np.uint8), dense_above=DENSE_ABOVE)


class FusedEngine:
    """The fused CPU engine (see the module docstring).

    Args:
        data: the dataset; its uint8 pixels are required.
        settings: as for :class:`~logreg_mnist.engines.numpy.NumpyEngine`.
        threads: OpenMP threads, always this many; None: up to the cores this process
            may run on, or one thread when that is measured to be faster.

    Raises:
        ConfigError: the kernel is not built, the data has no uint8 pixels, or it has
            more than 256 classes.
    """

    name = "fused"
    tolerance = Tolerance(float32=(1e-5, 1e-6), float64=(1e-12, 1e-13))  # sums in another order (module docstring)

    def __init__(
        self, data: Dataset, settings: SGDSettings, *, threads: int | None = None, max_resident: int | None = None
    ):
        self._setup(data, settings, threads)  # max_resident: the data are held in memory
        self._rows = {}
        for s in ("train", "valid", "test"):
            pixels = data.split(s).pixels
            assert pixels is not None  # checked by _setup
            self._rows[s] = _layout(pixels)
            if self._rows[s].sparse:
                release_pages(pixels)  # the CSR copy is what is read from now on
        self._rows["train"].add_minibatch_columns(self._n_train_rows, self.batch_size)

    @classmethod
    def held_bytes(cls, data: Dataset, settings: SGDSettings) -> int:
        """The bytes this engine's layouts of ``data`` will take (each split's density sampled:
        :func:`sampled_density`), which :func:`~logreg_mnist.engines.make_engine` holds against the
        memory budget. Data without uint8 pixels (which this engine refuses): their float images."""
        total = 0
        for s in ("train", "valid", "test"):
            split = data.split(s)
            if split.pixels is None:
                return (
                    sum(len(data.split(t)) for t in ("train", "valid", "test"))
                    * data.n_features
                    * settings.dtype.itemsize
                )
            batch = settings.batch_size if s == "train" else None
            total += layout_bytes(len(split), data.n_features, sampled_density(split.pixels), batch)
        return total

    def _setup(self, data: Dataset, settings: SGDSettings, threads: int | None, spare: int = 0) -> None:
        """Everything but the data's layouts: the checks, the labels, the parameters, the scratch.
        ``spare``: cores that other threads of the engine may want; unless ``threads`` is given,
        that many fewer threads are also tried."""
        from . import default_threads

        batch_size, learning_rate, l1, l2 = settings.batch_size, settings.learning_rate, settings.l1, settings.l2
        drop_last, dtype = settings.drop_last, settings.dtype

        kernel_info()  # raises when not built
        if any(data.split(s).pixels is None for s in ("train", "valid", "test")):
            raise ConfigError(
                "engine 'fused': expected uint8 pixels (multiples of 1/256), found float images; use --engine numpy"
            )
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ConfigError(f"engine 'fused': expected dtype float32 or float64, found {self.dtype}")
        self.threads = int(threads or default_threads())
        if self.threads < 1:
            raise ConfigError(f"threads: expected an integer >= 1, found {threads}")
        self._chooser = ThreadChooser(self.threads, fixed=threads is not None, also=(self.threads - spare,))
        self.batch_size = batch_size
        self.lr = float(self.dtype.type(learning_rate))
        self.l1, self.l2x2 = float(l1), float(2 * l2)
        self.drop_last = drop_last
        self.n_out = data.n_classes
        per_line = 64 // self.dtype.itemsize
        self.kp = -(-self.n_out // per_line) * per_line  # row stride: whole cache lines
        if self.kp > _fused.KP_MAX:
            raise ConfigError(f"engine 'fused': expected at most 256 classes, found {self.n_out}")
        self._y = {s: np.ascontiguousarray(data.split(s).labels, dtype=np.int64) for s in ("train", "valid", "test")}
        for s, y in self._y.items():
            if len(y) and (y.min() < 0 or y.max() >= self.n_out):
                raise ConfigError(f"{s} labels: expected 0-{self.n_out - 1}, found {y.min()}-{y.max()}")
        self.n_in = data.n_features
        n = len(self._y["train"])
        self.n_train_batches = n_batches(n, batch_size, drop_last)
        self._n_train_rows = self.n_train_batches * batch_size if drop_last else n
        self.W = _aligned_zeros((self.n_in, self.kp), self.dtype)
        self.b = _aligned_zeros((self.kp,), self.dtype)
        self._D = _aligned_zeros((batch_size, self.kp), self.dtype)
        self._G = _aligned_zeros((self.n_in, self.kp), self.dtype)
        self._nll = np.empty(batch_size, np.float64)

    @property
    def layout(self) -> dict[str, str]:
        """How each split is read: ``"sparse (density 0.19)"`` or ``"dense (...)"``."""
        return {s: f"{'sparse' if r.sparse else 'dense'} (density {r.density:.2f})" for s, r in self._rows.items()}

    def set_params(self, W: np.ndarray, b: np.ndarray) -> None:
        W, b = np.asarray(W), np.asarray(b)
        if W.shape != (self.n_in, self.n_out) or b.shape != (self.n_out,):
            raise ConfigError(
                f"expected W {(self.n_in, self.n_out)} and b {(self.n_out,)}, found {W.shape} and {b.shape}"
            )
        self.W[:] = 0
        self.W[:, : self.n_out] = W
        self.b[:] = 0
        self.b[: self.n_out] = b

    def get_params(self) -> tuple[np.ndarray, np.ndarray]:
        return self.W[:, : self.n_out].copy(), self.b[: self.n_out].copy()

    def train(self, batches: range) -> tuple[float, int]:
        self._check(batches)
        return self._run([(self._rows["train"], self._y["train"], batches.start, batches.stop, self._n_train_rows)])

    def _check(self, batches: range) -> None:
        if len(batches) and (batches.step != 1 or batches.start < 0 or batches.stop > self.n_train_batches):
            raise ValueError(f"expected consecutive minibatches within 0-{self.n_train_batches - 1}, found {batches}")

    def _run(self, segments: Iterable[Segment]) -> tuple[float, int]:
        """SGD steps on each segment's minibatches in turn (``(layout, labels, start, stop, n_rows)``: the
        minibatches ``start`` to ``stop - 1`` of the first ``n_rows`` rows of ``layout``, ``labels``
        theirs), with the thread count the chooser picks once per call (or per trial):
        (their summed NLL, examples)."""
        total, count = 0.0, 0
        threads, left = 0, 0  # the thread count in use (0: none yet), minibatches left to try it on (-1: all)
        began = time.perf_counter()  # the time a segment takes to come (a chunk being read) counts too
        for layout, labels, start, stop, n_rows in segments:
            while start < stop:
                if not threads:
                    threads = self._chooser.pick()
                    # A thread count being tried (or tried again) runs a few minibatches only, so that
                    # a bad choice on a busy machine costs little.
                    trying = threads != self._chooser.current or not self._chooser.measured(threads)
                    left = PROBE_BATCHES if trying else -1
                end = stop if left < 0 else min(stop, start + left)
                total = self._steps(layout, labels, start, end, n_rows, threads, total)
                now = time.perf_counter()
                self._chooser.record(threads, now - began, end - start)
                began = now
                count += min(end * self.batch_size, n_rows) - start * self.batch_size
                if left > 0:
                    left -= end - start
                    threads = threads if left else 0  # a trial ends: choose again
                start = end
        return total, count

    def _steps(
        self, layout: _fused.Layout, labels: np.ndarray, start: int, stop: int, n_rows: int, threads: int, nll: float
    ) -> float:
        """Minibatches ``start`` to ``stop - 1`` of ``layout`` in one call into the kernel: nll + their NLL."""
        return _fused.sgd(
            layout=layout,
            labels=labels,
            W=self.W,
            b=self.b,
            D=self._D,
            G=self._G,
            nll=self._nll,
            row0=start * self.batch_size,
            n_rows=n_rows,
            batch_size=self.batch_size,
            n_batches=stop - start,
            lr=self.lr,
            l1=self.l1,
            l2x2=self.l2x2,
            n_out=self.n_out,
            threads=threads,
            total=nll,
        )

    def counted(self, split: str) -> int:
        """How many examples of ``split`` are scored."""
        return counted(len(self._y[split]), self.batch_size, self.drop_last)

    def count_errors(self, split: str) -> tuple[int, int]:
        n = self.counted(split)
        return self._errors(self._rows[split], self._y[split], n), n

    def _errors(self, layout: _fused.Layout, labels: np.ndarray, n_rows: int) -> int:
        """Misclassified rows among the first ``n_rows`` of ``layout`` (``labels`` theirs)."""
        wrong = _fused.errors(
            layout=layout,
            labels=labels,
            W=self.W,
            b=self.b,
            n_rows=n_rows,
            n_out=self.n_out,
            threads=self._chooser.current,
        )
        return int(wrong)
