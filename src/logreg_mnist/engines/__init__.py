"""Engines: where the minibatch updates and the error counts are computed.

The training driver (:mod:`logreg_mnist.train`) sees an engine only through the
:class:`~logreg_mnist.engines.base.Engine` protocol. The engines:

- ``numpy`` (:mod:`.numpy`): the reference, NumPy and its BLAS;
- ``fused`` (:mod:`.fused`): a compiled kernel over the non-zero pixels, OpenMP
  threads; present when the optional C extension was built;
- ``gpu`` (:mod:`.gpu`): on a GPU, imported only when asked for;
- ``auto``: ``gpu`` when that module finds a GPU, else ``fused`` when built, else ``numpy``.

Data larger than the memory budget (``max_resident``) are read from their files in
chunks: by the ``numpy`` engine's chunked form (:mod:`.chunked`, the same
arithmetic) and by the ``gpu`` engine; the ``fused`` engine holds its data in memory.

The engine and its thread count are run-time choices, not part of a run's
:class:`~logreg_mnist.config.TrainConfig`: every engine computes the same
algorithm, within the float tolerance each engine's docstring states.
"""

from __future__ import annotations

import importlib
import inspect
import os
from typing import TYPE_CHECKING

from ..errors import ConfigError
from .base import Engine

if TYPE_CHECKING:
    from ..config import TrainConfig
    from ..data import Dataset

ENGINES = ("auto", "numpy", "fused", "gpu")

# name -> (module, class). Modules are imported only when their engine is asked for.
_REGISTRY: dict[str, tuple[str, str]] = {
    "numpy": (".numpy", "NumpyEngine"),
    "fused": (".fused", "FusedEngine"),
    "gpu": (".gpu", "GpuEngine"),
}


def default_threads() -> int:
    """The cores this process may run on (``os.sched_getaffinity``), else ``os.cpu_count()``."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _module(name: str):
    return importlib.import_module(_REGISTRY[name][0], __name__)


def _gpu_present() -> bool:
    try:
        gpu = _module("gpu")
    except ImportError:
        return False
    present = getattr(gpu, "available", None) or getattr(gpu, "gpu_available", None)
    return bool(present()) if callable(present) else False


def _fused_built() -> bool:
    return _module("fused").available()


def available_engines() -> list[str]:
    """The engines that can run here, ``numpy`` always among them (``auto`` not listed)."""
    names = ["numpy"]
    if _fused_built():
        names.append("fused")
    if _gpu_present():
        names.append("gpu")
    return names


def resolve(name: str) -> str:
    """The engine ``name`` stands for: ``auto`` becomes gpu, fused or numpy, in that order."""
    if name not in ENGINES:
        raise ConfigError(f"engine: expected one of {', '.join(ENGINES)}, found {name!r}")
    if name != "auto":
        return name
    if _gpu_present():
        return "gpu"
    return "fused" if _fused_built() else "numpy"


def _chunk_bytes(data: Dataset, config: TrainConfig, max_resident: int | None) -> int | None:
    """Bytes per chunk when ``data`` do not fit in ``max_resident`` on the CPU, else None."""
    import numpy as np

    from ..data.stream import chunk_bytes_for

    has_pixels = all(data.split(s).pixels is not None for s in ("train", "valid", "test"))
    # The CPU engines keep uint8 pixels (float images only where a dataset has no pixels).
    return chunk_bytes_for(data, max_resident, 1 if has_pixels else np.dtype(config.dtype).itemsize)


def make_engine(name: str, data: Dataset, config: TrainConfig, *, threads: int | None = None,
                max_resident: int | None = None) -> Engine:
    """The engine called ``name`` for ``data`` and ``config``'s SGD settings.

    Args:
        name: ``auto``, ``numpy``, ``fused`` or ``gpu``.
        data: the dataset (its uint8 pixels are used where the engine can).
        config: batch size, learning rate, penalties, drop_last and dtype are taken from it.
        threads: threads the engine computes with (None: the cores this process may run on).
        max_resident: memory budget in bytes for the data the engine holds; beyond it
            the splits are read from their files in chunks (None: a quarter of the
            available memory, at most 2 GiB: :func:`~logreg_mnist.data.stream.default_max_resident`).

    Raises:
        ConfigError: an unknown name, an engine that cannot run here, or ``threads`` < 1.
    """
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"threads: expected an integer >= 1, found {threads!r}")
    name = resolve(name) if name != "auto" or _gpu_present() else "auto"
    if name in ("auto", "numpy", "fused"):
        chunk = _chunk_bytes(data, config, max_resident)
        if chunk is not None:
            if name == "fused":
                from ..data.stream import format_size, resident_bytes

                raise ConfigError(f"engine 'fused': expected data that fit in the memory budget "
                                  f"({format_size(max_resident) if max_resident else 'the default'}), found "
                                  f"{format_size(resident_bytes(data, 1))}; use --engine numpy, which reads "
                                  "them in chunks, or a larger --max-resident")
            from .chunked import ChunkedNumpyEngine

            return ChunkedNumpyEngine(data, chunk_bytes=chunk, batch_size=config.batch_size,
                                      learning_rate=config.learning_rate, l1=config.l1, l2=config.l2,
                                      drop_last=config.drop_last, dtype=config.dtype)
    if name == "auto":
        # The fused engine needs uint8 pixels; fall back quietly where it cannot run.
        name = "fused" if _fused_built() and all(
            data.split(s).pixels is not None for s in ("train", "valid", "test")) else "numpy"
    try:
        module = _module(name)
    except ImportError as e:
        raise ConfigError(f"engine {name!r} cannot be loaded here: {e}") from None
    cls = getattr(module, _REGISTRY[name][1])
    accepted = inspect.signature(cls).parameters
    options = {k: v for k, v in (("threads", threads), ("max_resident", max_resident)) if k in accepted}
    return cls(data, batch_size=config.batch_size, learning_rate=config.learning_rate, l1=config.l1,
               l2=config.l2, drop_last=config.drop_last, dtype=config.dtype, **options)


__all__ = ["ENGINES", "Engine", "available_engines", "default_threads", "make_engine", "resolve"]
