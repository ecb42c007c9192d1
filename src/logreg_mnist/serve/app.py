"""The web app: thin Starlette handlers over :class:`~.run_view.RunView`, and the server.

Routes (all read-only; only what the run's own files hold is ever served):
    GET  /                          the page (``static/index.html``)
    GET  /api/run                   the run: dataset, class names, config, best epoch, history
    POST /api/predict[?raw=1][&explain=0]
                                    image bytes -> label, probabilities, prepared input, doubt,
                                    and (unless explain=0) evidence
    GET  /api/weights               the best model's weights as 28x28 maps, b, W (base64 float32)
    GET  /api/snapshots/{epoch}     a snapshot's weights, on the same scale
    GET  /api/learning-curves.png   the learning curves, drawn by :mod:`logreg_mnist.plots`
    GET  /api/mistakes[?offset=0&limit=24]
                                    the test digits the best model gets wrong (404: no test data)

Errors are JSON ``{"error": "..."}``: 400 for a bad request (empty body), 403 for a
``Host`` that does not name this server or a write from another origin (:mod:`.guard`),
408 for a request head or body that does not arrive in time, 413 for a body over
:data:`MAX_BODY_BYTES` (refused while reading, never kept: up to :data:`DRAIN_BYTES` more
are read and dropped first, so a client that sends its whole body before reading sees the
413), 422 for a body that is not an image the pipeline accepts (the project's
:class:`~logreg_mnist.errors.LogregMnistError`, including an image over
:data:`MAX_DECODED_BYTES` once decoded), 503 (with ``Retry-After``) when the server is
busy, 404 and 405 for unknown paths and methods, 500 for a bug.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import ipaddress
import json
import logging
import os
import socket
import sys
from collections.abc import Iterable
from importlib.resources import files
from typing import TextIO

import anyio
import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from ..errors import ConfigError, LogregMnistError, NotAnImageError
from ..images import FORMATS, peek_decoded_bytes
from ..images.drawing import clean_background
from .canvas import canvas_gray
from .guard import MemoryBudget, RequestGuard, guarded_protocol
from .mistakes import MAX_LIMIT, Mistakes
from .run_view import RunView
from .workers import Server, can_fork, default_workers, run_workers

MAX_BODY_BYTES = 5_000_000  # 5 MB: a phone photo fits, a flood does not
DRAIN_BYTES = 8_000_000  # read and dropped past the limit before the 413, so the client sees it
DRAIN_SECONDS = 5.0
IMAGE_WORKERS = min(4, os.cpu_count() or 1)  # images decoded at once; the others wait their turn
MAX_DECODED_BYTES = 64 * 2**20  # one image decoded (pixels x bands x bytes): 16 megapixels RGBA
DECODE_BUDGET = 2 * MAX_DECODED_BYTES  # all images decoded at once; a large one waits for its share
MAX_PENDING = 32  # uploads read and waiting to be decoded at once (32 x 5 MB); past this: 503
QUEUE_SECONDS = 10.0  # how long an upload waits for its turn before the 503
HEADER_TIMEOUT = 10.0  # seconds for a request head, from the connection or the previous answer
BODY_TIMEOUT = 30.0  # seconds for a whole body
MAX_CONNECTIONS = 512  # past this, a JSON 503; past twice this, closed unanswered
_TRIM_AFTER = 16 * 2**20  # hand freed memory back to the OS after decoding an image this large
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
_MMAP_BELOW = 4 * 2**20  # steady_malloc: arrays smaller than this come from the heap
_KEEP_FREE = 16 * 2**20  # steady_malloc: free memory kept at the top of each heap (an answer frees about 3 MB)
NOT_AN_IMAGE = f"That file is not an image: expected {', '.join(FORMATS[:-1])} or {FORMATS[-1]}."
_log = logging.getLogger(__name__)


class _Gone(Exception):
    """The client went away in the middle of its request: nothing to answer, nothing to log."""


def _page() -> str:
    return (files(__package__) / "static" / "index.html").read_text(encoding="utf-8")


async def _drain(request: Request, stream) -> None:
    """Read and drop the rest of a refused body, up to :data:`DRAIN_BYTES` and :data:`DRAIN_SECONDS`:
    a client that sends its whole body before reading then sees the answer, not a reset."""
    dropped = 0
    with anyio.move_on_after(DRAIN_SECONDS):
        async for chunk in stream:
            dropped += len(chunk)
            if dropped > DRAIN_BYTES:
                break


async def read_body(request: Request, limit: int = MAX_BODY_BYTES, timeout: float = BODY_TIMEOUT) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes
    (never kept; some of the rest is drained first) and with 408 when it takes over ``timeout`` s."""
    close = {"Connection": "close"}  # the rest of the body is not read: end the connection
    declared = request.headers.get("content-length")
    stream = request.stream()
    try:
        if declared is not None and declared.isdigit() and int(declared) > limit:
            if int(declared) <= limit + DRAIN_BYTES:  # a body too large to drain is answered at once
                await _drain(request, stream)
            raise HTTPException(413, f"expected a body of at most {limit:,} bytes, found {int(declared):,}", close)
        chunks: list[bytes] = []
        size = 0
        with anyio.move_on_after(timeout) as deadline:
            async for chunk in stream:
                size += len(chunk)
                if size > limit:
                    chunks.clear()
                    await _drain(request, stream)
                    raise HTTPException(413, f"expected a body of at most {limit:,} bytes, found more", close)
                chunks.append(chunk)
        if deadline.cancelled_caught:
            raise HTTPException(408, f"expected the whole body within {timeout:g} s, found {size:,} bytes", close)
    except ClientDisconnect:
        raise _Gone() from None
    if size == 0:
        raise HTTPException(400, "empty body: expected the bytes of an image (PNG, JPEG, ...)")
    return b"".join(chunks)


_LEVELS = [str(level) for level in range(256)]


def answer_json(answer: dict) -> bytes:
    """``answer`` (:meth:`RunView.predict`'s) as JSON: the same object Starlette's
    ``JSONResponse`` would send (compact, UTF-8, no NaN), its ``prepared`` 28x28 levels (most
    of it) written last, from a table of the 256 levels' texts, in half the time of the JSON
    encoder."""
    rest = {key: value for key, value in answer.items() if key != "prepared"}
    text = json.dumps(rest, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))
    if "prepared" not in answer:
        return text.encode("utf-8")
    grid = "],[".join([",".join([_LEVELS[level] for level in row]) for row in answer["prepared"]])
    return f'{text[:-1]}{"," if rest else ""}"prepared":[[{grid}]]}}'.encode()


def _libc():
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def _trim_memory() -> None:
    """Hand the memory freed after a large decode back to the OS (glibc keeps it otherwise)."""
    with contextlib.suppress(OSError, AttributeError):
        _libc().malloc_trim(0)


def steady_malloc() -> None:
    """Keep the memory of an answer's arrays for the next answer (glibc only; elsewhere nothing).

    An answer makes a few dozen arrays of 0.1-1.2 MB (a 280x280 drawing's levels, its float
    copies). With glibc's default thresholds each is mapped from the OS and unmapped again,
    or the heap's top is handed back at the end of every answer, so every answer pays for the
    same pages again (about a sixth of its time). Here arrays under :data:`_MMAP_BELOW` come
    from the heap and up to :data:`_KEEP_FREE` of free memory at its top is kept; a photo's
    large buffers are still mapped and unmapped, and :func:`_trim_memory` still hands the
    memory back after a large decode. Inherited by the worker processes.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = _libc()
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_BELOW)
        libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_FREE)


def create_app(
    view: RunView,
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
    image_workers: int = IMAGE_WORKERS,
    max_decoded_bytes: int = MAX_DECODED_BYTES,
    decode_budget: int = DECODE_BUDGET,
    max_pending: int = MAX_PENDING,
    allowed_hosts: Iterable[str] = (),
    body_timeout: float = BODY_TIMEOUT,
):
    """The app serving ``view``, inside a :class:`~.guard.RequestGuard` (Host allow-list: loopback
    names, IP literals and ``allowed_hosts``; no cross-origin writes).

    ``image_workers`` bounds the images decoded at once, ``decode_budget`` the bytes they take
    together (each at most ``max_decoded_bytes``), ``max_pending`` the uploads held at once;
    a body must arrive within ``body_timeout`` seconds.
    """
    page = _page()
    limiter: list[anyio.CapacityLimiter] = []  # made inside the event loop, on first use
    pending: list[anyio.CapacityLimiter] = []
    budget = MemoryBudget(decode_budget)

    mistakes = Mistakes(view.path, view.model)

    def decode(body: bytes, raw: bool, explain: bool, gray: np.ndarray | None = None) -> dict:
        cost = peek_decoded_bytes(body) if gray is None else gray.nbytes
        with budget.reserve(cost):
            try:
                return view.predict(body, raw=raw, explain=explain, max_decoded=max_decoded_bytes, gray=gray)
            finally:
                if cost > _TRIM_AFTER:
                    _trim_memory()

    async def index(request: Request) -> Response:
        return HTMLResponse(page)

    async def run_info(request: Request) -> Response:
        return JSONResponse(view.describe())

    def flag(request: Request, name: str, default: str) -> bool:
        value = request.query_params.get(name, default)
        if value not in ("0", "1"):
            raise HTTPException(400, f"{name}: expected 0 or 1, found {value[:20]!r}")
        return value == "1"

    def number(request: Request, name: str, default: int, most: int) -> int:
        text = request.query_params.get(name)
        if text is None:
            return default
        if not (text.isascii() and text.isdigit() and len(text) <= 9 and int(text) <= most):
            raise HTTPException(400, f"{name}: expected a whole number from 0 to {most}, found {text[:20]!r}")
        return int(text)

    async def predict(request: Request) -> Response:
        raw, explain = flag(request, "raw", "0"), flag(request, "explain", "1")
        if not limiter:
            limiter.append(anyio.CapacityLimiter(image_workers))
            pending.append(anyio.CapacityLimiter(max_pending))
        try:
            pending[0].acquire_nowait()  # (the common case: no wait, no timer)
        except anyio.WouldBlock:
            with anyio.move_on_after(QUEUE_SECONDS) as waited:
                await pending[0].acquire()
            if waited.cancelled_caught:
                raise HTTPException(
                    503,
                    f"the server is busy: {max_pending} images are waiting; try again in a moment",
                    {"Retry-After": "1"},
                ) from None
        try:
            body = await read_body(request, max_body_bytes, body_timeout)
            # A drawing from the page's pad is decoded here (a millisecond; at most CANVAS_SIDE
            # pixels a side, it takes no share of the decode budget: waiting for one would stop
            # the event loop until a thread's large photo is done); a clean one is answered here
            # too (another millisecond), rather than handed to a thread and back. Anything else
            # may take long: a thread.
            gray = canvas_gray(body)
            if gray is not None and (raw or clean_background(gray) is not None):
                result = view.predict(body, raw=raw, explain=explain, max_decoded=max_decoded_bytes, gray=gray)
            else:
                result = await anyio.to_thread.run_sync(decode, body, raw, explain, gray, limiter=limiter[0])
        finally:
            pending[0].release()
        return Response(answer_json(result), media_type="application/json")

    async def weights(request: Request) -> Response:
        text = request.path_params.get("epoch")
        epoch = int(text) if text is not None and text.isascii() and text.isdigit() and len(text) <= 9 else None
        if text is not None and epoch is None:
            raise HTTPException(404, f"no such snapshot: expected an {view.unit} number (at most 9 digits)")
        answer = view.weights(epoch)
        if answer is None:
            raise HTTPException(
                404, f"no snapshot of {view.unit} {epoch}: the run has {', '.join(map(str, view.snapshots)) or 'none'}"
            )
        return JSONResponse(answer)

    async def learning_curves(request: Request) -> Response:
        png = await anyio.to_thread.run_sync(view.learning_curves_png)
        if png is None:
            raise HTTPException(404, "no learning curves: serving a model file, or a run without history.jsonl")
        return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    async def wrong_answers(request: Request) -> Response:
        offset = number(request, "offset", 0, 10**9)
        limit = number(request, "limit", 24, MAX_LIMIT)
        answer = await anyio.to_thread.run_sync(mistakes.page, offset, limit)
        if isinstance(answer, str):
            raise HTTPException(404, answer)
        return JSONResponse(answer)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    async def project_error(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": NOT_AN_IMAGE if isinstance(exc, NotAnImageError) else str(exc)}, status_code=422)

    async def gone(request: Request, exc: Exception) -> Response:
        return Response(status_code=400)  # nobody is listening

    async def internal_error(request: Request, exc: Exception) -> Response:
        _log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": "internal error (see the server's log)"}, status_code=500)

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/api/run", run_info),
            Route("/api/predict", predict, methods=["POST"]),
            Route("/api/weights", weights),
            Route("/api/snapshots/{epoch}", weights),
            Route("/api/learning-curves.png", learning_curves),
            Route("/api/mistakes", wrong_answers),
        ],
        exception_handlers={
            HTTPException: http_error,
            LogregMnistError: project_error,
            _Gone: gone,
            ClientDisconnect: gone,
            Exception: internal_error,
        },
    )
    return RequestGuard(app, allowed_hosts)


def _is_loopback(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return False
    return all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)


def bind(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0: any free port); ConfigError when impossible.

    ``reuse_port``: with ``SO_REUSEPORT`` where the system has it (Linux), so that several
    workers can each listen on the address (:func:`~.workers.worker_sockets`). The address is
    first taken by a plain socket, so a port another server holds (one with ``SO_REUSEPORT``
    too, such as another ``serve``) is refused as ever rather than shared with it.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port and sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT"):
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(address)  # refused if the port is taken, by anyone
                address = probe.getsockname()  # (port 0: the free port it got)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        raise ConfigError(f"--host {host} --port {port}: cannot listen there: {e.strerror or e}") from None
    return sock


def server_config(
    app,
    *,
    header_timeout: float = HEADER_TIMEOUT,
    max_connections: int = MAX_CONNECTIONS,
) -> uvicorn.Config:
    """uvicorn's settings for ``app``: request heads within ``header_timeout`` s, a JSON 503 past
    ``max_connections`` (uvicorn's own plain-text limit is not used), quiet logs."""
    return uvicorn.Config(
        app,
        http=guarded_protocol(header_timeout, max_connections),
        log_level="warning",
        access_log=False,
        lifespan="off",
        limit_concurrency=None,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=3,
    )


def _more_files(wanted: int) -> None:
    """Raise this process's soft limit of open files towards ``wanted`` (within the hard limit)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        if soft != resource.RLIM_INFINITY and soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ImportError, OSError, ValueError):
        pass


def workers_for(host: str, workers: int | None = None) -> int:
    """``workers``, or by default 1 on a loopback address (one person's page) and
    :func:`~.workers.default_workers` elsewhere (a classroom)."""
    if workers is not None:
        return workers
    return 1 if _is_loopback(host) else default_workers()


def serve(
    target: str | os.PathLike,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    workers: int | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> None:
    """Load ``target`` (a run directory or a model file), print the page's URL and serve it
    until Ctrl-C (which uvicorn turns into a clean shutdown, then KeyboardInterrupt).

    ``workers`` processes answer on the one socket (:mod:`.workers`), each with its own guard
    and limits; by default one on a loopback address (one person's page), else
    :func:`~.workers.default_workers` (one per core, at most 8: a classroom).
    """
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port: expected 0-65535, found {port}")
    workers = workers_for(host, workers)
    if workers < 1 or (workers > 1 and not can_fork()):
        raise ConfigError(f"--workers: expected {'1 on this system' if workers > 1 else 'at least 1'}, found {workers}")
    steady_malloc()
    view = RunView(target)
    app = create_app(view, allowed_hosts=[host])
    _more_files(2 * MAX_CONNECTIONS + 256)
    sock = bind(host, port, reuse_port=workers > 1)
    view.warm_up()  # before the workers are forked: they share what it loads
    address = sock.getsockname()
    shown = f"[{address[0]}]" if ":" in address[0] else address[0]
    if not _is_loopback(host):
        print(
            f"warning: listening on {host}: anyone who can reach this address can use the page; "
            "it has no authentication",
            file=err,
            flush=True,
        )
    print(f"serving {target} at http://{shown}:{address[1]}/  (Ctrl-C to stop)", file=out, flush=True)
    if workers > 1:
        print(f"{workers} server processes answer there", file=out, flush=True)

    def run(listening: socket.socket) -> None:
        Server(server_config(app)).run(sockets=[listening])

    with sock:
        if workers == 1:
            run(sock)
        else:
            run_workers(run, sock, workers)
