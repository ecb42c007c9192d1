"""The fused engine on data over the memory budget: the kernel's sparse rows made chunk by chunk.

:class:`ChunkedFusedEngine` runs the fused engine's kernel (:mod:`.fused`) on splits that
are never resident as a whole. Each split is cut into chunks of whole minibatches
(evaluation: of rows) on a fixed grid; one reader thread reads a chunk's uint8 rows
from the IDX file (:meth:`logreg_mnist.data.stream.Rows.read`, positioned reads) and
builds from them the chunk's ``_fused.Layout`` (its rows' non-zeros, and for training
each minibatch's non-zeros by column; a dense layout keeps the rows themselves) while
the kernel trains on the chunk before it. The reads and the layout building release
the GIL.

Data layout: per split, the chunk in use and the next one (built ahead; after a
split's last chunk, its first, for the next epoch or evaluation), each its sparse
rows (6 bytes per non-zero pixel for training, 3 for evaluation: MNIST-like data,
1.2 and 0.6 times the chunk's pixels) or, for rows too wide for the sparse form, its
dense rows, plus one uint8 buffer that sparse chunks are read into. A split that is
one chunk keeps its layout, as the in-memory engine does. The chunk size is set from
what these take (:func:`chunk_cost`, each split's density sampled as the in-memory
engine samples it): the six layouts and the buffer stay within the budget, and within
192 MiB, at most 16 MiB of pixels a chunk. The data are read in chunks when the
in-memory engine's layouts would exceed the budget
(:meth:`~.fused.FusedEngine.held_bytes`), even where their pixels would fit.

Arithmetic: the same kernel calls, minibatch after minibatch in the same order, on
the same rows: a minibatch's sums do not depend on where its rows are stored, nor on
the thread count, and the summed NLL is carried from call to call. So the parameters,
the NLL sums and the error counts are bit-identical to :class:`~.fused.FusedEngine`'s
wherever both read a split in the same form, sparse or dense. The in-memory engine
chooses that form from the whole split (:func:`~.fused.sparse_form`: sparse unless its
rows are wider than 65,536 pixels, or denser than :data:`~.fused.DENSE_ABOVE`); this
one, from its first chunk, and reads every later chunk of the split in that form
(the same choice wherever the form depends on the width only). A dense split's chunk
with no non-zero pixel at all is kept sparse, which gives the same sums (every term is
zero).

Threading: the reader thread, and the kernel's OpenMP threads, chosen as the in-memory
engine chooses them, by measured speed, but among three counts: all the cores, one
fewer (the reader's: a kernel thread that waits for its core holds up the others at
each of the kernel's barriers, which matters where the reader is busy: many cores, or
sparse data) and one.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

import numpy as np

from ..data import Dataset
from ..data.stream import MAX_CHUNK_BYTES, Rows, default_max_resident
from . import fused
from .base import SGDSettings
from .fused import FusedEngine, Segment, _fused, layout_bytes, sampled_density, sparse_form

SPLITS = ("train", "valid", "test")
CHUNKS_AT_MOST = 192 << 20  # what the chunks of the three splits (layouts and buffer) take, at most


def chunk_cost(data: Dataset, settings: SGDSettings) -> float:
    """Bytes held per uint8 byte of a chunk's pixels: for each split, two layouts (the one in use and the
    next, built ahead; sized as :func:`~.fused.layout_bytes` sizes them, each split's density sampled),
    and the reader's buffer, which sparse layouts are built from."""
    n_in, rows = data.n_features, max(settings.batch_size, 1_000)
    cost, buffer = 0.0, 0.0
    for s in SPLITS:
        pixels = data.split(s).pixels
        assert pixels is not None  # checked by the caller
        density = sampled_density(pixels)
        batch = settings.batch_size if s == "train" else None
        cost += 2 * layout_bytes(rows, n_in, density, batch) / (rows * n_in)
        buffer = 1.0 if sparse_form(n_in, density) else buffer
    return cost + buffer


def chunk_bytes(data: Dataset, settings: SGDSettings, max_resident: int | None) -> int | None:
    """The uint8 bytes of pixels per chunk under ``max_resident`` (None: the default budget), or None
    where the in-memory engine's layouts fit (:meth:`~.fused.FusedEngine.held_bytes`)."""
    budget = default_max_resident() if max_resident is None else max_resident
    if FusedEngine.held_bytes(data, settings) <= budget:
        return None
    return max(1, min(int(min(budget, CHUNKS_AT_MOST) / chunk_cost(data, settings)), MAX_CHUNK_BYTES // 2))


class _Chunk(NamedTuple):
    """One chunk of a split as the kernel reads it."""

    layout: _fused.Layout  # rows [start, start + layout.n) of the split
    labels: np.ndarray  # (layout.n,) int64, theirs
    n_rows: int  # the rows of it that are used (training: within the epoch's rows)


class ChunkedFusedEngine(FusedEngine):
    """The fused engine on splits read in chunks (see the module docstring).

    Args:
        data: the dataset; its uint8 ``pixels`` are required (memory-mapped IDX files
            are read by position, in-memory arrays are sliced).
        settings: as for :class:`~.fused.FusedEngine`.
        threads: the kernel's OpenMP threads, always this many; None: the cores this process
            may run on, one fewer (left to the reader thread) or one, whichever is measured
            to be fastest.
        max_resident: the memory budget in bytes (None: the default); each split is
            read in chunks of :func:`chunk_bytes` (rounded down to whole minibatches for
            training, at least one), data whose layouts fit in it as one chunk per split.

    Attributes:
        tolerance: as the in-memory fused engine's, whose results it gives bit for bit.
    """

    name = "fused"  # the fused engine; only the data are read differently

    def __init__(
        self, data: Dataset, settings: SGDSettings, *, threads: int | None = None, max_resident: int | None = None
    ):
        no_pixels = any(data.split(s).pixels is None for s in SPLITS)  # refused by _setup
        chunk = None if no_pixels else chunk_bytes(data, settings, max_resident)
        self._setup(data, settings, threads, spare=0 if chunk is None else 1)  # a core for the reader
        B = self.batch_size
        self._rows: dict[str, Rows] = {  # type: ignore[assignment]  # Rows here, Layouts in the parent
            s: Rows.for_split(data.split(s), chunk, multiple=B if s == "train" else 1) for s in SPLITS
        }
        # rows per chunk: whole minibatches for training; a split of one chunk is all of it
        self._span = {s: r.chunk_rows if r.chunked else len(r) for s, r in self._rows.items()}
        self._used = {"train": self._n_train_rows, "valid": self.counted("valid"), "test": self.counted("test")}
        self._sparse: dict[str, bool] = {}  # each split's form, chosen on its first chunk
        self._current: dict[str, tuple[int, _Chunk]] = {}  # split -> (first row, chunk) last used
        self._ahead: dict[str, tuple[int, Future]] = {}  # split -> (first row, chunk being built)
        self._buffer: np.ndarray | None = None  # the reader's uint8 rows (sparse layouts copy them)
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="logreg-mnist-layout")

    @property
    def layout(self) -> dict[str, str]:
        """How each split is read: ``"sparse, in chunks of 21,000 rows"``; ``"form not chosen yet, ..."``
        before its first chunk is read."""
        form = {True: "sparse", False: "dense", None: "form not chosen yet"}
        return {s: f"{form[self._sparse.get(s)]}, in chunks of {self._span[s]:,} rows" for s in SPLITS}

    def train(self, batches: range) -> tuple[float, int]:
        self._check(batches)
        return self._run(self._segments(batches))

    def _segments(self, batches: range) -> Iterator[Segment]:
        """The chunks that hold ``batches``, each as the minibatches of it to run, made as they are asked for."""
        per = self._span["train"] // self.batch_size if self._rows["train"].chunked else self.n_train_batches
        b = batches.start
        while b < batches.stop:
            first = b // per * per  # the chunk's first minibatch
            chunk = self._chunk("train", first * self.batch_size)
            stop = min(batches.stop, first + per)
            yield chunk.layout, chunk.labels, b - first, stop - first, chunk.n_rows
            b = stop

    def count_errors(self, split: str) -> tuple[int, int]:
        n, wrong = self._used[split], 0
        for start in range(0, n, self._span[split]):
            chunk = self._chunk(split, start)
            wrong += self._errors(chunk.layout, chunk.labels, chunk.n_rows)
        return wrong, n

    def _chunk(self, split: str, start: int) -> _Chunk:
        """The chunk of ``split`` from row ``start`` (on the grid); the next one is then built ahead."""
        current = self._current.get(split)
        if current is None or current[0] != start:
            self._current.pop(split, None)  # released before another is taken
            ahead = self._ahead.pop(split, None)
            future = (
                ahead[1] if ahead is not None and ahead[0] == start else self._reader.submit(self._build, split, start)
            )
            current = (start, future.result())  # raises the reader's DataError, if any
            self._current[split] = current
        after = start + self._span[split]
        after = after if after < self._used[split] else 0  # after the last chunk, the first
        if after != start and split not in self._ahead:
            self._ahead[split] = (after, self._reader.submit(self._build, split, after))
        return current[1]

    def _build(self, split: str, start: int) -> _Chunk:
        """Reads the chunk of ``split`` from row ``start`` and makes its layout (in the reader thread)."""
        if split not in self._sparse and start != 0:
            self._build(split, 0)  # the split's form is chosen on its first chunk
        rows = self._rows[split]
        stop = min(start + self._span[split], len(rows))
        out = None
        if rows.streamed:
            if self._buffer is None or len(self._buffer) < stop - start:
                self._buffer = np.empty((max(self._span.values()), rows.n_features), np.uint8)
            out = self._buffer
        pixels = rows.read(start, stop, out)
        sparse = self._sparse.get(split)
        layout = _fused.Layout(pixels, dense_above=fused.DENSE_ABOVE if sparse is None else 1.0 if sparse else 0.0)
        self._sparse.setdefault(split, layout.sparse)
        if not layout.sparse:
            self._buffer = None  # the layout reads these rows in place: they are its own now
        n_rows = min(stop, self._used[split]) - start
        if split == "train":
            layout.add_minibatch_columns(n_rows, self.batch_size)
        return _Chunk(layout, self._y[split][start:stop], n_rows)
