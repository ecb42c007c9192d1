"""The web app: thin Starlette handlers over :class:`~.run_view.RunView`, and the server.

Routes (all read-only; only what the run's own files hold is ever served):
    GET  /                          the page (``static/index.html``)
    GET  /api/run                   the run: dataset, class names, config, best epoch, history
    POST /api/predict[?raw=1]       image bytes -> label, probabilities, prepared input, evidence
    GET  /api/weights               the best model's weights as 28x28 maps
    GET  /api/snapshots/{epoch}     a snapshot's weights, on the same scale
    GET  /api/learning-curves.png   the learning curves, drawn by :mod:`logreg_mnist.plots`

Errors are JSON ``{"error": "..."}``: 400 for a bad request (empty body), 413 for a body
over :data:`MAX_BODY_BYTES` (refused while reading, never read whole), 422 for a body that
is not an image the pipeline accepts (the project's :class:`~logreg_mnist.errors.LogregMnistError`),
404 and 405 for unknown paths and methods.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import sys
from importlib.resources import files
from typing import TextIO

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from ..errors import ConfigError, LogregMnistError
from .run_view import RunView

MAX_BODY_BYTES = 5_000_000  # 5 MB: a phone photo fits, a flood does not
IMAGE_WORKERS = min(4, os.cpu_count() or 1)  # images decoded at once; the others wait their turn
MAX_CONNECTIONS = 64  # uvicorn answers 503 beyond this, so memory stays bounded under a flood
_log = logging.getLogger(__name__)


def _page() -> str:
    return (files(__package__) / "static" / "index.html").read_text(encoding="utf-8")


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    close = {"Connection": "close"}  # the rest of the body is not read: end the connection
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"expected a body of at most {limit:,} bytes, found {int(declared):,}", close)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"expected a body of at most {limit:,} bytes, found more", close)
        chunks.append(chunk)
    if size == 0:
        raise HTTPException(400, "empty body: expected the bytes of an image (PNG, JPEG, ...)")
    return b"".join(chunks)


def create_app(
    view: RunView,
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
    image_workers: int = IMAGE_WORKERS,
) -> Starlette:
    """The Starlette app serving ``view``; ``image_workers`` bounds the images decoded at once."""
    page = _page()
    limiter: list[anyio.CapacityLimiter] = []  # made inside the event loop, on first use

    async def index(request: Request) -> Response:
        return HTMLResponse(page)

    async def run_info(request: Request) -> Response:
        return JSONResponse(view.describe())

    async def predict(request: Request) -> Response:
        raw = request.query_params.get("raw", "0")
        if raw not in ("0", "1"):
            raise HTTPException(400, f"raw: expected 0 or 1, found {raw[:20]!r}")
        body = await read_body(request, max_body_bytes)
        if not limiter:
            limiter.append(anyio.CapacityLimiter(image_workers))
        result = await anyio.to_thread.run_sync(lambda: view.predict(body, raw=raw == "1"), limiter=limiter[0])
        return JSONResponse(result)

    async def weights(request: Request) -> Response:
        epoch = request.path_params.get("epoch")
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

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    async def project_error(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=422)

    async def internal_error(request: Request, exc: Exception) -> Response:
        _log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": "internal error (see the server's log)"}, status_code=500)

    return Starlette(
        routes=[
            Route("/", index),
            Route("/api/run", run_info),
            Route("/api/predict", predict, methods=["POST"]),
            Route("/api/weights", weights),
            Route("/api/snapshots/{epoch:int}", weights),
            Route("/api/learning-curves.png", learning_curves),
        ],
        exception_handlers={HTTPException: http_error, LogregMnistError: project_error, Exception: internal_error},
    )


def _is_loopback(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return False
    return all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0: any free port); ConfigError when impossible."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        raise ConfigError(f"--host {host} --port {port}: cannot listen there: {e.strerror or e}") from None
    return sock


def serve(
    target: str | os.PathLike,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> None:
    """Load ``target`` (a run directory or a model file), print the page's URL and serve it
    until Ctrl-C (which uvicorn turns into a clean shutdown, then KeyboardInterrupt)."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port: expected 0-65535, found {port}")
    view = RunView(target)
    app = create_app(view)
    sock = bind(host, port)
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
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        limit_concurrency=MAX_CONNECTIONS,
        timeout_graceful_shutdown=3,
    )
    with sock:
        uvicorn.Server(config).run(sockets=[sock])
