"""Ordered maps over a pool of processes, with a progress bar on a terminal."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def usable_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def start_method() -> str | None:
    """How the workers start: forked where that is safe (Linux, no other Python thread, no JAX,
    whose threads a fork can deadlock), which is fast and starts them with the modules already
    imported; else a fork server (or the platform's default)."""
    import multiprocessing
    import threading

    methods = multiprocessing.get_all_start_methods()
    if sys.platform == "linux" and "fork" in methods and threading.active_count() == 1 and "jax" not in sys.modules:
        return "fork"
    return "forkserver" if "forkserver" in methods else None


def _ignore_interrupts() -> None:
    """In a worker: Ctrl-C is the parent's to answer (it stops the pool), not a traceback per worker."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _NoBar:
    """What the loops below need of a progress bar, doing nothing."""

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def update(self) -> None:
        pass


def ordered_map(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    workers: int | None = None,
    progress: bool | None = None,
    desc: str = "",
    unit: str = "it",
) -> list[R]:
    """``[fn(item) for item in items]``, computed by a pool of processes when there are several
    items and cores, returned in the order of ``items``.

    Args:
        fn: a function a worker process can import (defined at a module's top level); it
            should return its expected failures as values: an exception it raises stops
            the pool and propagates.
        items: what ``fn`` is applied to (picklable).
        workers: processes (None: one per usable core, at most one per item; 1: in this process).
        progress: a progress bar on stderr (None: when stderr is a terminal and there are
            several items).
        desc, unit: the bar's label and unit.
    """
    if not items:
        return []
    workers = max(1, min(len(items), workers or usable_cores()))
    if progress is None:
        progress = len(items) > 1 and sys.stderr.isatty()

    def bar():
        if not progress:  # no tqdm at all: even a disabled bar starts its monitor thread, and a
            return _NoBar()  # thread in this process rules out forking the next pool
        from tqdm.auto import tqdm

        return tqdm(total=len(items), unit=unit, desc=desc, leave=False, file=sys.stderr)

    if workers == 1:
        with bar() as shown:
            results = []
            for item in items:
                results.append(fn(item))
                shown.update()
            return results
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context(start_method())
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_ignore_interrupts)
    try:
        chunk = max(1, min(8, len(items) // (8 * workers)))  # small: the last chunks keep every worker busy
        answers = pool.map(fn, items, chunksize=chunk)  # the workers start here, before the bar's thread
        with bar() as shown:
            results = []
            for result in answers:
                results.append(result)
                shown.update()
    except BaseException:  # Ctrl-C included: the work not started is dropped, not waited for
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return results
