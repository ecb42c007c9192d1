"""Several server processes answering on one listening socket, for a classroom on one machine.

Answering a drawing takes a few milliseconds of one core, in Python and NumPy (decoding its
PNG, preparing it, the web server's own work), so one process answers a few hundred drawings
a second whatever its threads. ``serve --workers N``
binds the socket once, loads the run once, then forks ``N`` processes that each run the
same app on the port: on Linux each on a listening socket of its own (``SO_REUSEPORT``:
the kernel spreads new connections evenly among them, :func:`worker_sockets`), elsewhere
all on the one socket (each new connection goes to whichever accepts it first). Each
worker has its own guard and limits (connections, uploads waiting, images decoded at
once, their memory), as a single server has. Forking needs a POSIX system; elsewhere one
process serves.

The parent waits: Ctrl-C (SIGINT) or SIGTERM is passed on to the workers, which finish
their answers and stop (those still there after :data:`GRACE_SECONDS` are killed); a worker that stops by itself (a crash, killed for memory) stops
the others and the command fails with :class:`~logreg_mnist.errors.ServerError`. A worker
whose parent dies is sent SIGTERM by the kernel (Linux), so none is left serving alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator

import uvicorn

from ..errors import ServerError

MAX_DEFAULT_WORKERS = 8
GRACE_SECONDS = 10.0  # for the workers to finish their answers once told to stop; then they are killed
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


class Server(uvicorn.Server):
    """uvicorn's server, taking SIGINT and SIGTERM in only once its own handlers are in place:
    workers are forked with those signals blocked, so one sent while a worker starts waits
    for it (and stops it) instead of landing in a handler on the way."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
            yield


def can_fork() -> bool:
    """Whether this system can run several workers (POSIX ``fork``)."""
    return hasattr(os, "fork") and sys.platform != "win32"


def default_workers() -> int:
    """One worker per core, at most :data:`MAX_DEFAULT_WORKERS`; 1 where workers cannot be forked."""
    if not can_fork():
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(MAX_DEFAULT_WORKERS, cores))


def _die_with_parent() -> None:
    """Ask Linux to send this process SIGTERM when its parent dies (elsewhere: nothing)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def worker_sockets(sock: socket.socket, n: int) -> list[socket.socket]:
    """A listening socket for each of ``n`` workers: ``sock`` and, where it has ``SO_REUSEPORT``
    (Linux), ``n - 1`` more on its address, among which the kernel spreads new connections
    evenly. One socket shared by all goes to whichever worker wakes first, and a burst (a
    class opening the page at once) may all land on one while the others idle. Elsewhere,
    or if the others cannot be made: ``sock`` for every worker."""
    if n == 1 or not sys.platform.startswith("linux") or not hasattr(socket, "SO_REUSEPORT"):
        return [sock] * n
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT):
        return [sock] * n
    more: list[socket.socket] = []
    try:
        for _ in range(n - 1):
            extra = socket.socket(sock.family, sock.type, sock.proto)
            more.append(extra)
            extra.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            extra.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            extra.bind(sock.getsockname())
            extra.listen(128)
    except OSError:
        for extra in more:
            extra.close()
        return [sock] * n
    return [sock, *more]


def _start(run: Callable[[socket.socket], None], sock: socket.socket) -> int:
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the worker: serve until told to stop, then leave without the parent's clean-up
        code = 0
        try:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            _die_with_parent()
            if os.getppid() != parent:  # the parent died before the request above took effect
                os._exit(0)
            run(sock)
        except KeyboardInterrupt:
            pass
        except BaseException:  # noqa: BLE001 - reported here: the parent only sees the exit status
            import traceback

            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    return pid


def _stop(pids: set[int], how: int = signal.SIGINT) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, how)


def _ended(status: int) -> str:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            return f"killed by {signal.Signals(number).name}"
        except ValueError:
            return f"killed by signal {number}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def _reap(pids: set[int], grace: float = GRACE_SECONDS) -> None:
    """Wait for the workers ``pids`` (told to stop) for ``grace`` seconds, then kill those left."""
    deadline = time.monotonic() + grace
    try:
        while pids and time.monotonic() < deadline:
            pid, _ = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                time.sleep(0.02)
            pids.discard(pid)
    except KeyboardInterrupt:  # Ctrl-C again: stop now
        pass
    except ChildProcessError:
        pids.clear()
    _stop(pids, signal.SIGKILL)
    while pids:
        try:
            pids.discard(os.wait()[0])
        except ChildProcessError:
            break


def run_workers(run: Callable[[socket.socket], None], sock: socket.socket, n: int) -> None:
    """Run ``run(sock)`` in ``n`` forked processes and wait for them.

    Raises:
        KeyboardInterrupt: after Ctrl-C or SIGTERM (passed on to the workers, then waited for).
        ServerError: a worker stopped on its own; the others were stopped.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    pids: set[int] = set()
    sockets = worker_sockets(sock, n)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: signal.default_int_handler(signum, frame))
    try:
        try:
            signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)  # the workers unblock them in Server
            try:
                for listening in sockets:
                    pids.add(_start(run, listening))
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
                for listening in sockets[1:]:
                    if listening is not sock:
                        listening.close()  # the worker holds its own
            pid, status = os.wait()  # the first to stop on its own stops the others
        except BaseException:
            _stop(pids)
            _reap(pids)
            raise
        pids.discard(pid)
        _stop(pids)
        _reap(pids)
        others = "the other was" if n == 2 else f"the other {n - 1} were"
        raise ServerError(f"a server process stopped on its own ({_ended(status)}); {others} stopped too")
    finally:
        signal.signal(signal.SIGTERM, previous)
