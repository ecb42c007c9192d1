"""Engines: where the minibatch updates and the error counts are computed.

The training driver (:mod:`logreg_mnist.train`) sees an engine only through the
:class:`~logreg_mnist.engines.base.Engine` protocol. The engines:

- ``numpy`` (:mod:`.numpy`): the reference, NumPy and its BLAS;
- ``fused`` (:mod:`.fused`): a compiled kernel over the non-zero pixels, OpenMP
  threads; present when the optional C extension was built;
- ``gpu`` (:mod:`.gpu`): on a GPU, imported only when asked for;
- ``auto``: ``gpu`` when that module finds a GPU, else ``fused`` when built (and the
  data have uint8 pixels), else ``numpy``.

Data larger than the memory budget (``max_resident``) are read from their files in
chunks, by each engine's chunked form: the ``numpy`` engine's (:mod:`.chunked`), the
``fused`` engine's (:mod:`.fused_chunked`), each with the same arithmetic as in
memory, and the ``gpu`` engine itself.

The engine and its thread count are run-time choices, not part of a run's
:class:`~logreg_mnist.config.TrainConfig`: every engine computes the same
algorithm, within the float tolerance each engine states (its ``tolerance``).

Adding an engine is one module, one entry in :data:`REGISTRY` and a green
``tests/test_engine_conformance.py``: the module defines a class made as
``EngineClass(data, settings, *, threads=None, max_resident=None)`` (``settings``:
:class:`~logreg_mnist.engines.base.SGDSettings`) that follows the
:class:`~logreg_mnist.engines.base.Engine` protocol, ``name`` and ``tolerance``
included; the entry names that class and the one to use for data over the memory
budget (the same class when it reads its data in chunks itself, None when it cannot).
The data are over the budget when the bytes the class will hold exceed it: its
classmethod ``held_bytes(data, settings)`` where it has one (the fused engine counts
its sparse layouts), else the uint8 pixels (float images where a dataset has none).
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ConfigError
from .base import Engine, SGDSettings

if TYPE_CHECKING:
    from ..config import TrainConfig
    from ..data import Dataset


@dataclass(frozen=True)
class Entry:
    """One engine of the registry: where its classes are, as ``"module:Class"`` (a module
    name relative to this package, or absolute), imported only when the engine is asked for.

    Attributes:
        resident: the engine, for data that fit in the memory budget.
        chunked: the engine for data over the budget (reading them in chunks), or None
            where the engine cannot run on them.
    """

    resident: str
    chunked: str | None = None


# name -> Entry, in the order ``auto`` prefers them after the GPU (see resolve).
REGISTRY: dict[str, Entry] = {
    "numpy": Entry(".numpy:NumpyEngine", chunked=".chunked:ChunkedNumpyEngine"),
    "fused": Entry(".fused:FusedEngine", chunked=".fused_chunked:ChunkedFusedEngine"),
    "gpu": Entry(".gpu:GpuEngine", chunked=".gpu:GpuEngine"),
}
ENGINES = ("auto", *REGISTRY)


def default_threads() -> int:
    """The cores this process may run on (``os.sched_getaffinity``), else ``os.cpu_count()``."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _load(where: str) -> type:
    """The class ``"module:Class"`` names (ImportError when its module cannot be loaded)."""
    module, _, name = where.partition(":")
    return getattr(importlib.import_module(module, __name__), name)


def _gpu_present() -> bool:
    try:
        gpu = importlib.import_module(".gpu", __name__)
    except ImportError:
        return False
    return bool(gpu.gpu_available())


def _fused_built() -> bool:
    return importlib.import_module(".fused", __name__).available()


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
    if name != "auto" and name not in REGISTRY:
        raise ConfigError(f"engine: expected one of {', '.join(('auto', *REGISTRY))}, found {name!r}")
    if name != "auto":
        return name
    if _gpu_present():
        return "gpu"
    return "fused" if _fused_built() else "numpy"


def _has_pixels(data: Dataset) -> bool:
    return all(data.split(s).pixels is not None for s in ("train", "valid", "test"))


def _held_bytes(cls: type, data: Dataset, settings: SGDSettings) -> int:
    """The bytes the engine ``cls`` holds for ``data``: its ``held_bytes`` where it has one, else the
    uint8 pixels (float images only where a dataset has no pixels)."""
    from ..data.stream import resident_bytes

    held = getattr(cls, "held_bytes", None)
    if held is not None:
        return int(held(data, settings))
    return resident_bytes(data, 1 if _has_pixels(data) else settings.dtype.itemsize)


CHUNKED_FUSED_DENSITY = 0.3
"""``auto`` over the memory budget takes the fused engine's chunked form for training pixels at most
this dense (MNIST: 0.19), else the chunked NumPy engine. The chunked fused engine rebuilds each
chunk's sparse rows in its reader thread every epoch, and that work grows with the non-zero
pixels: measured on 2 cores, it is about as fast as the chunked NumPy engine on MNIST-like
images and 2-3x slower at 0.58 non-zero, where BLAS's dense products win."""


def _too_dense_for_chunks(data: Dataset) -> bool:
    from .fused import sampled_density

    pixels = data.train.pixels
    return pixels is not None and sampled_density(pixels) > CHUNKED_FUSED_DENSITY


def make_engine(
    name: str, data: Dataset, config: TrainConfig, *, threads: int | None = None, max_resident: int | None = None
) -> Engine:
    """The engine called ``name`` for ``data`` and ``config``'s SGD settings.

    The name is resolved (``auto``: the GPU when present, else the fused engine where it
    can run (uint8 pixels), else numpy), the engine's chunked form is taken when the data exceed the
    memory budget (``auto``: the fused engine's for training pixels at most
    :data:`CHUNKED_FUSED_DENSITY` non-zero, else NumPy's), and the engine is made as every engine is.

    Args:
        name: ``auto`` or a name of :data:`REGISTRY` (``numpy``, ``fused``, ``gpu``).
        data: the dataset (its uint8 pixels are used where the engine can).
        config: batch size, learning rate, penalties, drop_last and dtype are taken from it
            (:meth:`SGDSettings.from_config`).
        threads: threads the engine computes with (None: the engine's choice).
        max_resident: memory budget in bytes for the data the engine holds; beyond it
            the splits are read from their files in chunks (None: a quarter of the
            available memory, at most 2 GiB: :func:`~logreg_mnist.data.stream.default_max_resident`).

    Raises:
        ConfigError: an unknown name, an engine that cannot run here (or on data over the
            budget), or ``threads`` < 1. More ``threads`` than the cores this process may run on
            (:func:`default_threads`) are capped at the cores, with a warning on standard error.
    """
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"threads: expected an integer >= 1, found {threads!r}")
    cores = default_threads()
    if threads is not None and threads > cores:  # more threads than cores only wait for each other
        print(
            f"warning: threads: {threads:,} asked for, capped at the {cores} core(s) this process may run on",
            file=sys.stderr,
        )
        threads = cores
    name = resolve(name) if name != "auto" else name
    settings = SGDSettings.from_config(config)
    auto = name == "auto"
    if auto:  # the fused engine needs uint8 pixels; fall back quietly where it cannot run
        name = "gpu" if _gpu_present() else "fused" if _fused_built() and _has_pixels(data) else "numpy"
    from ..data.stream import default_max_resident, format_size

    entry = REGISTRY[name]
    try:
        cls = _load(entry.resident)
        held = _held_bytes(cls, data, settings)
        budget = default_max_resident() if max_resident is None else max_resident
        if held > budget:
            if entry.chunked is None:
                raise ConfigError(
                    f"engine {name!r}: expected data that fit in the memory budget "
                    f"({format_size(max_resident) if max_resident else 'the default'}), found "
                    f"{format_size(held)}; use --engine numpy, which reads "
                    "them in chunks, or a larger --max-resident"
                )
            if auto and name == "fused" and _too_dense_for_chunks(data):
                name, entry = "numpy", REGISTRY["numpy"]
                cls = _load(entry.resident)
                if _held_bytes(cls, data, settings) > budget and entry.chunked is not None:
                    cls = _load(entry.chunked)
            elif entry.chunked is not None:
                cls = _load(entry.chunked)
    except ImportError as e:
        raise ConfigError(f"engine {name!r} cannot be loaded here: {e}") from None
    return cls(data, settings, threads=threads, max_resident=max_resident)


__all__ = [
    "ENGINES",
    "REGISTRY",
    "Engine",
    "Entry",
    "SGDSettings",
    "available_engines",
    "default_threads",
    "make_engine",
    "resolve",
]
