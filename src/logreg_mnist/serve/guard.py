"""What keeps the server standing against a hostile web page or a flood, apart from the routes.

The server listens on a loopback address, but any web page the user visits can make the
browser send requests to it. So:

- :class:`RequestGuard` (ASGI, around the app) answers only requests whose ``Host`` names
  this server (a loopback name, an IP literal, the name it was started with: a DNS-rebinding
  page's name is refused) and refuses writes from another origin (``Origin`` or
  ``Sec-Fetch-Site`` say so), including the "simple" cross-origin POSTs browsers send
  without asking first. Any exception that escapes the app ends here, as a JSON 500,
  logged once.
- :func:`guarded_protocol` (uvicorn's HTTP/1.1 protocol, subclassed) closes a connection
  that has not delivered a whole request head within ``header_timeout`` seconds (a
  slow-loris client, or one that sends nothing), and answers every connection past
  ``max_connections`` with a JSON 503 instead of the app. Its writes made in one turn of
  the event loop leave as one (an answer's head and body: one system call, one packet).
- :class:`MemoryBudget` bounds the bytes of images decoded at once: a request waits for
  its share instead of every request decoding at the same time.

Every refusal is JSON ``{"error": "..."}``, as the routes' errors are.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

_log = logging.getLogger(__name__)


def json_bytes(error: str) -> bytes:
    return json.dumps({"error": error}).encode()


async def send_json(send: Any, status: int, error: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """Send a whole JSON error response through the ASGI ``send``."""
    body = json_bytes(error)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _host_name(host: str) -> str:
    """The name in a ``Host`` header value (no port, lower case, no trailing dot)."""
    if host.startswith("["):
        name = host[1:].partition("]")[0]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name.rstrip(".").lower()


def host_allowed(host: str, extra: Iterable[str] = (), server: str | None = None) -> bool:
    """Whether a ``Host`` header names this server: an IP literal, ``localhost`` (or a name
    under ``.localhost``), one of ``extra``, or ``server`` (the name the transport gives)."""
    name = _host_name(host)
    if not name:
        return False
    try:
        ipaddress.ip_address(name.split("%")[0])
        return True
    except ValueError:
        pass
    if name == "localhost" or name.endswith(".localhost"):
        return True
    allowed = {e.rstrip(".").lower() for e in extra}
    if server:
        allowed.add(server.rstrip(".").lower())
    return name in allowed


def _netloc(value: str, scheme: str = "http") -> str:
    """``host:port`` with the scheme's default port made explicit, lower case."""
    try:
        parts = urlsplit(f"{scheme}://{value}")
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        return ""
    hostname = parts.hostname or ""
    return f"{hostname}:{port}"


class RequestGuard:
    """ASGI middleware: the Host allow-list, no cross-origin writes, one JSON 500 for a bug."""

    SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

    def __init__(self, app: Any, allowed_hosts: Iterable[str] = ()):
        self.app = app
        self.allowed_hosts = tuple(allowed_hosts)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get(b"host")
        server = scope.get("server")
        if host is not None and not host_allowed(host, self.allowed_hosts, server[0] if server else None):
            await send_json(
                send,
                403,
                f"Host: expected this server's name (localhost, an IP address or {', '.join(self.allowed_hosts) or '-'}), "
                f"found {host[:100]!r}",
            )
            return
        if scope["method"] not in self.SAFE_METHODS:
            refusal = self._cross_origin(headers, host, scope.get("scheme", "http"))
            if refusal:
                await send_json(send, 403, refusal)
                return
        started = False

        async def tracked(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as e:  # noqa: BLE001 - the app's handler answered and logged it; uvicorn must not again
            if not started:
                _log.error("internal error on %s %s: %r", scope["method"], scope.get("path"), e)
                await send_json(send, 500, "internal error (see the server's log)")

    @staticmethod
    def _cross_origin(headers: dict[bytes, str], host: str | None, scheme: str) -> str | None:
        site = headers.get(b"sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return f"expected a request from this page (Sec-Fetch-Site same-origin), found Sec-Fetch-Site {site[:40]!r}"
        origin = headers.get(b"origin")
        if origin is None:
            return None
        parts = urlsplit(origin) if origin != "null" else None
        if parts is None or host is None or _netloc(parts.netloc, parts.scheme) != _netloc(host, scheme):
            return f"expected a request from this page's origin, found Origin {origin[:100]!r}"
        return None


def busy_app(max_connections: int) -> Any:
    """An ASGI app answering every request with a JSON 503 (the connection is then closed)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send_json(
            send,
            503,
            f"the server is busy: more than {max_connections:,} connections are open; try again in a moment",
            [(b"retry-after", b"1"), (b"connection", b"close")],
        )

    return app


class _Coalescing:
    """A transport whose writes made in one turn of the event loop leave as one ``send``: an
    answer's head and body in one packet (one system call, one wake-up of the client)."""

    def __init__(self, transport: Any, loop: Any):
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def guarded_protocol(header_timeout: float, max_connections: int) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a deadline for each request head and a JSON 503 past
    ``max_connections`` (twice that many: closed at once, unanswered)."""

    class GuardedH11Protocol(H11Protocol):
        _deadline: Any = None
        _got_bytes = False

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self.transport = _Coalescing(transport, self.loop)  # type: ignore[assignment]
            if len(self.connections) > 2 * max_connections:
                transport.abort()
                return
            if len(self.connections) > max_connections:
                self.app = busy_app(max_connections)
            self._arm()

        def _arm(self) -> None:
            self._disarm()
            self._got_bytes = False
            self._deadline = self.loop.call_later(header_timeout, self._expire)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expire(self) -> None:
            self._deadline = None
            if self.cycle is not None and not self.cycle.response_complete:
                return  # the app has the request; its body has its own deadline
            if self.transport.is_closing():
                return
            if self._got_bytes and self.conn.their_state is h11.IDLE:
                body = json_bytes(f"expected a whole request head within {header_timeout:g} s")
                self.transport.write(
                    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                    b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
                )
            self.transport.close()

        def data_received(self, data: bytes) -> None:
            self._got_bytes = True
            super().data_received(data)
            if self.cycle is not None and not self.cycle.response_complete:
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return GuardedH11Protocol


class MemoryBudget:
    """A number of bytes shared by threads: :meth:`reserve` waits until its share is free."""

    def __init__(self, total: int):
        self.total = total
        self._free = total
        self._cond = threading.Condition()

    @contextmanager
    def reserve(self, n: int) -> Iterator[None]:
        """Hold ``n`` bytes (at most the whole budget) for the block."""
        n = max(0, min(n, self.total))
        with self._cond:
            self._cond.wait_for(lambda: self._free >= n)
            self._free -= n
        try:
            yield
        finally:
            with self._cond:
                self._free += n
                self._cond.notify_all()
