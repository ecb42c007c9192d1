"""The server against a hostile web page and a flood: slow clients, bombs of deep pixels, foreign
Host names, cross-origin writes, aborted uploads, bursts. All on 127.0.0.1, with bounded counts."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib

import numpy as np
import pytest
from PIL import Image

from logreg_mnist.images import decoded_bytes, open_image
from logreg_mnist.serve import MAX_BODY_BYTES, RunView, create_app
from logreg_mnist.serve.app import bind, server_config

from .serve_run import drawing, png_bytes


def _start(app, **limits):
    import uvicorn

    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(server_config(app, **limits))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    return server, thread, sock


@pytest.fixture(scope="module")
def strict(run_dir):
    """A real server with short deadlines and few connections: yields its port."""
    server, thread, sock = _start(create_app(RunView(run_dir)), header_timeout=1.0, max_connections=16)
    yield sock.getsockname()[1]
    server.should_exit = True
    thread.join(10)
    sock.close()


def request(port: int, head: str, body: bytes = b"", timeout: float = 10) -> tuple[int, dict]:
    """Send a raw request (``head`` without the blank line); the status and the JSON answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head.encode() + b"\r\n\r\n" + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    answer = rest.partition(b"\r\n\r\n")[2]
    return int(status_line.split()[1]), (json.loads(answer) if answer.startswith(b"{") else {"raw": answer})


def get(port: int, path: str, host: str = "127.0.0.1", extra: str = "") -> tuple[int, dict]:
    return request(port, f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close{extra}")


def closed_within(s: socket.socket, seconds: float) -> bytes | None:
    """What the server sent before closing ``s`` within ``seconds``; None if it stays open."""
    s.settimeout(seconds)
    data = b""
    try:
        while chunk := s.recv(4096):
            data += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return data


def test_slow_loris_connections_are_closed_and_others_are_answered(strict):
    idle = [socket.create_connection(("127.0.0.1", strict), timeout=5) for _ in range(10)]
    half = [socket.create_connection(("127.0.0.1", strict), timeout=5) for _ in range(10)]
    try:
        for s in half:
            s.sendall(b"GET /api/run HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        # 20 connections are open, the limit is 16: an answer, in JSON, not a plain-text 503
        status, answer = get(strict, "/api/run")
        assert status == 503 and "busy" in answer["error"]
        for s in half:
            data = closed_within(s, 5)
            assert data is not None, "a half-sent request head was never timed out"
            assert data.startswith(b"HTTP/1.1 408") and b"request head" in data
        for s in idle:
            assert closed_within(s, 5) is not None, "a silent connection was never timed out"
        status, answer = get(strict, "/api/run")
        assert status == 200 and answer["name"] == "run"
    finally:
        for s in idle + half:
            s.close()


def test_a_body_sent_too_slowly_is_cut_off(run_dir):
    server, thread, sock = _start(create_app(RunView(run_dir), body_timeout=1.0), header_timeout=1.0)
    try:
        with socket.create_connection(sock.getsockname(), timeout=10) as s:
            s.sendall(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n" + b"\0" * 10)
            data = closed_within(s, 8)
        assert data is not None and data.startswith(b"HTTP/1.1 408") and b"whole body" in data
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def deep_png(side: int, color_type: int = 6, depth: int = 16) -> bytes:
    """A PNG header claiming side x side pixels of RGBA 16 bits (its data a stub)."""
    data = bytearray(png_bytes(Image.new("L", (1, 1))))
    ihdr = 16
    data[ihdr : ihdr + 10] = struct.pack(">IIBB", side, side, depth, color_type)
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13])))
    return bytes(data)


def float_tiff(side: int) -> bytes:
    buf = io.BytesIO()
    Image.new("F", (side, side)).save(buf, format="TIFF", compression="tiff_adobe_deflate")
    return buf.getvalue()


def test_the_decode_budget_counts_bands_and_bytes_not_only_pixels(strict):
    tiff = float_tiff(4200)  # 17.6 megapixels (under the pixel cap) of 4-byte floats: 70 MB decoded
    assert len(tiff) < 400_000
    for body, found in ((deep_png(4200), "RGBA"), (tiff, "mode F")):
        t = time.monotonic()
        status, answer = request(strict, f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                                         f"Content-Length: {len(body)}", body)
        assert status == 422 and "bytes once decoded" in answer["error"] and found in answer["error"]
        assert time.monotonic() - t < 2, "refused from the header, before decoding"
    with pytest.raises(Exception, match="bytes once decoded"):
        open_image(deep_png(4200), max_decoded=64 * 2**20)
    assert decoded_bytes(Image.new("RGBA", (10, 10))) == 400
    assert decoded_bytes(Image.new("F", (10, 10))) == 400
    assert decoded_bytes(Image.new("I;16", (10, 10))) == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.nip.io", "localhost.evil.example"])
def test_a_foreign_host_is_refused(strict, host):
    for path in ("/api/weights", "/api/run", "/"):
        status, answer = get(strict, path, host=host)
        assert status == 403 and "Host" in answer["error"]


@pytest.mark.parametrize("host", ["localhost", "localhost:{port}", "127.0.0.1:{port}", "[::1]:{port}", "LOCALHOST."])
def test_loopback_names_are_answered(strict, host):
    status, answer = get(strict, "/api/run", host=host.format(port=strict))
    assert status == 200 and answer["name"] == "run"


@pytest.mark.parametrize("headers", [
    "\r\nOrigin: http://evil.example\r\nContent-Type: text/plain",
    "\r\nOrigin: null\r\nContent-Type: text/plain",
    "\r\nOrigin: http://127.0.0.1:1\r\nContent-Type: multipart/form-data; boundary=x",
    "\r\nSec-Fetch-Site: cross-site\r\nContent-Type: application/x-www-form-urlencoded",
])
def test_a_cross_origin_write_is_refused_before_the_body_is_used(strict, headers):
    body = png_bytes(drawing("1"))
    status, answer = request(strict, f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{strict}\r\nConnection: close"
                                     f"\r\nContent-Length: {len(body)}{headers}", body)
    assert status == 403 and "label" not in answer and "rigin" in answer["error"] or "Sec-Fetch" in answer["error"]


def test_a_same_origin_write_is_answered(strict):
    body = png_bytes(drawing("1"))
    status, answer = request(strict, f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{strict}\r\nConnection: close"
                                     f"\r\nOrigin: http://127.0.0.1:{strict}\r\nSec-Fetch-Site: same-origin"
                                     f"\r\nContent-Length: {len(body)}", body)
    assert status == 200 and answer["label"] == 1


def test_a_body_over_the_limit_is_answered_to_a_client_that_sends_it_all(strict):
    req = urllib.request.Request(f"http://127.0.0.1:{strict}/api/predict", data=b"\0" * (MAX_BODY_BYTES + 500_000),
                                 method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=30)
    assert e.value.code == 413 and "at most 5,000,000 bytes" in json.loads(e.value.read())["error"]


def test_a_burst_is_served_not_refused(strict, run_dir):
    server, thread, sock = _start(create_app(RunView(run_dir)))  # the default limits
    port = sock.getsockname()[1]

    async def one() -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /api/weights HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        await writer.drain()
        status = int((await reader.readline()).split()[1])
        await reader.read()
        writer.close()
        return status

    async def burst():
        return await asyncio.wait_for(asyncio.gather(*(one() for _ in range(300))), 60)

    try:
        statuses = asyncio.run(burst())
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
    assert statuses.count(200) == 300, {s: statuses.count(s) for s in set(statuses)}


def test_serve_under_attack_logs_no_traceback_and_no_500(run_dir):
    proc = subprocess.Popen([sys.executable, "-m", "logreg_mnist", "serve", str(run_dir), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        port = int(proc.stdout.readline().split("http://127.0.0.1:")[1].split("/")[0])
        status, answer = get(port, "/api/snapshots/" + "9" * 5000)
        assert status == 404 and "snapshot" in answer["error"]
        for _ in range(5):  # aborted uploads
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n"
                          + b"\x89PNG" * 100)
        big = png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)))
        for body in (big[:50], b"junk", b"\0" * 10):
            request(port, f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                          f"Content-Length: {len(body)}", body)
        get(port, "/api/run", host="evil.example")
        status, answer = get(port, "/api/run")
        assert status == 200
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert "Traceback" not in err and " 500" not in err, err[-3000:]
