"""The Dask cluster a sweep runs on: a running scheduler, or a local cluster started here.

Dask and distributed are imported inside the functions, so that reading a sweep
(plots, tables) or building the command line does not import them.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import ClusterError

CONNECT_TIMEOUT_S = 5  # an unreachable scheduler, or one that does not speak Dask, is reported after this
_MAX_HANDSHAKE = 64 * 2**20  # a scheduler's handshake is a few hundred bytes; a larger length is not Dask


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Ignore SIGINT meanwhile (in the main thread only; elsewhere nothing changes)."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _check_address(address: str) -> None:
    """Refuse an address Dask cannot parse before a client is made for it."""
    from distributed.comm import parse_address
    from distributed.comm.registry import backends

    try:
        scheme, location = parse_address(address)
    except (ValueError, TypeError) as e:
        raise ClusterError(f"--scheduler {address}: expected an address like tcp://host:8786, found {e}") from None
    if scheme not in backends or not location:
        raise ClusterError(
            f"--scheduler {address}: expected an address like tcp://host:8786 (schemes: "
            f"{', '.join(sorted(backends))}), found {address!r}"
        )
    if scheme in ("tcp", "tls"):
        from distributed.comm.addressing import parse_host_port

        try:
            parse_host_port(location)
        except ValueError:
            raise ClusterError(
                f"--scheduler {address}: expected an address like tcp://host:8786, found no port"
            ) from None


def _probe(address: str, deadline_s: float = CONNECT_TIMEOUT_S) -> None:
    """Check that a ``tcp://`` address answers as a Dask scheduler does, within ``deadline_s``.

    A scheduler sends its handshake as soon as a connection is made: a frame led by its
    length (8 bytes, little-endian). A server that sends nothing (an HTTP server waits for a
    request) or something else (a banner) is refused here; Dask's client would wait on it
    for minutes. OSError (nothing listens there) passes to the caller.

    Raises:
        ClusterError: the address answers, but not as Dask.
    """
    from distributed.comm import parse_address
    from distributed.comm.addressing import parse_host_port

    scheme, location = parse_address(address)
    if scheme != "tcp":
        return
    host, port = parse_host_port(location)
    end = time.monotonic() + deadline_s
    head = b""
    with socket.create_connection((host, port), timeout=deadline_s) as s:
        while len(head) < 8:
            left = end - time.monotonic()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                chunk = s.recv(8 - len(head))
            except TimeoutError:
                break
            if not chunk:
                break
            head += chunk
    if len(head) < 8:
        found = f"a server that sent {head!r} and then nothing" if head else "a server that sent nothing"
        raise ClusterError(
            f"--scheduler {address}: expected a Dask scheduler's handshake within {deadline_s:g} s, found {found} "
            "(another kind of server on that port?); start one with `dask scheduler`"
        )
    (length,) = struct.unpack("<Q", head)
    if not 0 < length <= _MAX_HANDSHAKE:
        raise ClusterError(
            f"--scheduler {address}: expected a Dask scheduler, found a server that sent {head!r} "
            "(another kind of server on that port?); start one with `dask scheduler`"
        )


@contextmanager
def _quiet_dask() -> Iterator[None]:
    """Keep Dask's own error logs (tracebacks of a lost scheduler) off the terminal meanwhile;
    the sweep reports what failed in its own words."""
    import logging

    loggers = [logging.getLogger(name) for name in ("distributed", "distributed.client", "distributed.core")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


@contextmanager
def dask_client(scheduler: str | None = None, n_workers: int | None = None) -> Iterator[Any]:
    """A ``distributed.Client``: to the scheduler at ``scheduler``, or to a new local cluster
    of ``n_workers`` single-threaded worker processes on 127.0.0.1, closed on exit.

    Raises:
        ClusterError: the scheduler cannot be reached within ``CONNECT_TIMEOUT_S`` seconds.
    """
    import logging

    from distributed import Client, LocalCluster

    cluster = None
    if scheduler:
        _check_address(scheduler)
        try:
            _probe(scheduler)
            client = Client(scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
        except (OSError, TimeoutError, ValueError, TypeError) as e:
            raise ClusterError(
                f"--scheduler {scheduler}: cannot reach a Dask scheduler there within {CONNECT_TIMEOUT_S} s "
                f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no answer'}); start one with "
                "`dask scheduler` and workers with `dask worker ADDRESS`"
            ) from None
    else:
        # Worker processes inherit an ignored SIGINT: a terminal's Ctrl-C reaches the driver alone, which
        # then stops them. No dashboard; the scheduler's small HTTP server on a free port, not on 8787.
        with _sigint_ignored():
            cluster = LocalCluster(
                n_workers=n_workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                silence_logs=logging.ERROR,
            )
        client = Client(cluster, set_as_default=False)
    try:
        with _quiet_dask():
            yield client
    finally:
        with _quiet_dask():
            client.close()
            if cluster is not None:
                cluster.close()


def local_worker_count() -> int:
    """The CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
