"""The Python face of the compiled kernel (``_fused.c``): what it takes and returns.

Every argument is checked by the kernel; a bad one raises ``TypeError`` or ``ValueError``
naming it. Arrays: ``labels`` int64 (layout.n,); ``W`` float32 or float64 (layout.n_in, KP)
with n_out <= KP <= :data:`KP_MAX`; ``b`` (KP,), ``D`` (batch_size, KP) and ``G``
(layout.n_in, KP) of W's dtype; ``nll`` float64 (batch_size,); all C-contiguous.
"""

from typing import final

import numpy as np

KP_MAX: int  # the widest row of W the kernel takes (256 classes, rounded up to a multiple of 8)
MAX_THREADS: int  # the most OpenMP threads a call may ask for

@final
class Layout:
    """One split's uint8 (n, n_in) pixels as the kernel reads them (sparse: a copy it owns)."""

    def __init__(self, pixels: np.ndarray, dense_above: float) -> None: ...
    @property
    def sparse(self) -> bool: ...
    @property
    def density(self) -> float: ...
    @property
    def n(self) -> int: ...
    @property
    def n_in(self) -> int: ...
    @property
    def nnz(self) -> int: ...
    @property
    def minibatch_size(self) -> int | None: ...
    def add_minibatch_columns(self, n_rows: int, batch_size: int) -> bool: ...

# fmt: off
def sgd(*, layout: Layout, labels: np.ndarray, W: np.ndarray, b: np.ndarray, n_rows: int, n_out: int, threads: int,
        D: np.ndarray, G: np.ndarray, nll: np.ndarray, row0: int, batch_size: int, n_batches: int, lr: float,
        l1: float, l2x2: float, total: float) -> float: ...
def errors(*, layout: Layout, labels: np.ndarray, W: np.ndarray, b: np.ndarray, n_rows: int, n_out: int,
           threads: int) -> int: ...
# fmt: on
def info() -> dict[str, bool | str]: ...
