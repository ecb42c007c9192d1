"""What a drawing costs the server: no thread hop for the page's drawings, and an answer's head
and body written out as one."""

from __future__ import annotations

import asyncio
import platform
import socket
import sys

import pytest

from logreg_mnist.serve import RunView
from logreg_mnist.serve.app import bind, create_app, server_config
from logreg_mnist.serve.guard import _Coalescing

from .serve_run import drawing, make_run, png_bytes


def test_the_page_s_drawings_are_answered_without_a_thread_hop(tmp_path, monkeypatch):
    """A drawing is a millisecond's work: done in the event loop (a hop to a worker thread and
    back costs about as much); anything else, which may take long, still goes to a thread."""
    from starlette.testclient import TestClient

    from logreg_mnist.serve import app as app_module

    hops = []
    real = app_module.anyio.to_thread.run_sync

    async def counted(*args, **kwargs):
        hops.append(args[0].__name__)
        return await real(*args, **kwargs)

    monkeypatch.setattr(app_module.anyio.to_thread, "run_sync", counted)
    view = RunView(make_run(tmp_path / "run"))
    client = TestClient(create_app(view))
    page = client.post("/api/predict?explain=0", content=png_bytes(drawing("1", mode="RGBA")))
    assert page.status_code == 200 and page.json()["label"] in range(10) and hops == []
    photo = client.post("/api/predict?explain=0", content=png_bytes(drawing("1"), "JPEG"))
    assert photo.status_code == 200 and hops == ["decode"]
    assert photo.json()["prepared"] != [[0] * 28] * 28
    # a PNG the size of the pad that is no clean drawing (paper texture): the full analysis, in a thread
    import numpy as np
    from PIL import Image

    texture = np.random.default_rng(0).integers(200, 230, size=(280, 280)).astype(np.uint8)
    texture[60:220, 130:150] = 20
    scan = client.post("/api/predict?explain=0", content=png_bytes(Image.fromarray(texture)))
    assert scan.status_code == 200 and hops == ["decode", "decode"]
    assert scan.json() == view.predict(png_bytes(Image.fromarray(texture)), explain=False)


class Transport:
    def __init__(self):
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str):
        return ("127.0.0.1", 1) if name == "peername" else None


def test_writes_in_one_turn_of_the_loop_leave_as_one():
    async def scenario():
        loop = asyncio.get_running_loop()
        raw = Transport()
        t = _Coalescing(raw, loop)
        t.write(b"HTTP/1.1 200 OK\r\n\r\n")
        t.write(b"{}")
        assert raw.writes == []  # not yet: at the end of this turn
        await asyncio.sleep(0)
        assert raw.writes == [b"HTTP/1.1 200 OK\r\n\r\n{}"]
        t.write(b"bye")
        t.close()  # what is pending goes first
        assert raw.writes[-1] == b"bye" and raw.closed and t.is_closing()
        assert t.get_extra_info("peername") == ("127.0.0.1", 1)

    asyncio.run(scenario())


def test_an_answer_arrives_in_one_piece(tmp_path):
    """Head and body of an answer in one segment: the client's first read holds all of it."""
    import threading

    import uvicorn

    app = create_app(RunView(make_run(tmp_path / "run")))
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(server_config(app))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        body = png_bytes(drawing("1", mode="RGBA"))
        port = sock.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            for _ in range(3):
                c.sendall(
                    b"POST /api/predict?explain=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                first = c.recv(1 << 20)
                head, _, rest = first.partition(b"\r\n\r\n")
                length = next(
                    int(v)
                    for k, _, v in (x.partition(b":") for x in head.split(b"\r\n"))
                    if k.lower() == b"content-length"
                )
                assert len(rest) == length, "the answer came in pieces"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_the_ink_box_of_whole_levels_is_that_of_their_float_copy():
    import numpy as np

    from logreg_mnist.serve.doubt import ink_box

    rng = np.random.default_rng(4)
    for _ in range(200):
        a = np.full((60, 80), rng.integers(0, 256), np.uint8)
        r, c = rng.integers(0, 55, size=2)
        a[r : r + rng.integers(1, 30), c : c + rng.integers(1, 30)] = rng.integers(0, 256)
        a[rng.integers(0, 60), rng.integers(0, 80)] = rng.integers(0, 256)
        assert ink_box(a) == ink_box(a.astype(np.float32))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT spreads connections on Linux only")
def test_each_worker_listens_on_its_own_socket_and_a_burst_of_connections_is_shared():
    from logreg_mnist.serve.workers import worker_sockets

    shared = bind("127.0.0.1", 0)
    with shared:
        assert worker_sockets(shared, 2) == [shared, shared]  # without SO_REUSEPORT: the one socket
    sock = bind("127.0.0.1", 0, reuse_port=True)
    sockets = worker_sockets(sock, 2)
    try:
        assert len({id(s) for s in sockets}) == 2
        assert {s.getsockname() for s in sockets} == {sock.getsockname()}
        clients = [socket.create_connection(sock.getsockname(), timeout=5) for _ in range(32)]
        accepted = []
        for s in sockets:
            s.setblocking(False)
            n = 0
            while True:
                try:
                    conn, _ = s.accept()
                except BlockingIOError:
                    break
                conn.close()
                n += 1
            accepted.append(n)
        assert sum(accepted) == 32 and min(accepted) > 0, accepted  # all on one: 2 chances in 4 billion
        for c in clients:
            c.close()
    finally:
        for s in sockets:
            s.close()


def test_a_port_another_server_listens_on_is_refused_even_with_so_reuseport():
    from logreg_mnist.errors import ConfigError

    with bind("127.0.0.1", 0, reuse_port=True) as first:
        with pytest.raises(ConfigError, match="cannot listen there"):
            bind("127.0.0.1", first.getsockname()[1], reuse_port=True)
        with pytest.raises(ConfigError, match="cannot listen there"):
            bind("127.0.0.1", first.getsockname()[1])


def test_the_ink_box_is_its_definition_on_every_background():
    import math

    import numpy as np

    from logreg_mnist.serve.doubt import INK_CONTRAST, SIDE, _median, ink_box

    def reference(gray):  # the definition: median of every 4th row and column; ink at least INK_CONTRAST away
        level = float(np.median(gray[::4, ::4]))
        ink = np.abs(gray.astype(np.float64) - level) >= INK_CONTRAST
        rows, cols = np.nonzero(ink.any(axis=1))[0], np.nonzero(ink.any(axis=0))[0]
        if len(rows) == 0:
            return None
        scale = SIDE / max(gray.shape)
        return (rows[-1] - rows[0] + 1) * scale, (cols[-1] - cols[0] + 1) * scale

    rng = np.random.default_rng(5)
    found = set()
    for _ in range(300):
        h, w = (int(v) for v in rng.integers(1, 70, size=2))
        paper = int(rng.choice([0, 10, 63, 64, 128, 191, 192, 250, 255]))
        a = np.full((h, w), paper, np.uint8)
        for _ in range(int(rng.integers(0, 4))):
            r, c = int(rng.integers(h)), int(rng.integers(w))
            a[r : r + int(rng.integers(1, 20)), c : c + int(rng.integers(1, 20))] = rng.integers(0, 256)
        expected = reference(a)
        assert ink_box(a) == expected
        found.add(expected is None)
    assert found == {True, False}
    for n in range(1, 40):  # the median: np.median's, in the array's precision
        for dtype in (np.uint8, np.float32):
            sample = (rng.random(n) * 255).astype(dtype)
            assert _median(sample) == float(np.median(sample)) and not math.isnan(_median(sample))


def test_an_answer_is_written_as_starlette_s_json_response_would(tmp_path):
    import json

    from starlette.responses import JSONResponse

    from logreg_mnist.serve.app import answer_json

    from .serve_run import drawing, make_run, png_bytes

    view = RunView(make_run(tmp_path / "run"))
    for kind in ("0", "1"):
        for explain in (False, True):
            answer = view.predict(png_bytes(drawing(kind, mode="RGBA")), explain=explain)
            assert json.loads(answer_json(answer)) == json.loads(JSONResponse(answer).body)
    assert answer_json({"prepared": [[0, 1], [255, 7]]}) == b'{"prepared":[[0,1],[255,7]]}'
    assert answer_json({"label": 3}) == b'{"label":3}'


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc thresholds")
def test_steady_malloc_keeps_an_answer_s_arrays_memory_for_the_next():
    """An answer's arrays (a 280x280 drawing's levels and their copies) no longer cost fresh pages from
    the OS every time: page faults over 100 answers' worth of allocations, before and after."""
    import subprocess

    code = """
import resource, numpy as np
from logreg_mnist.serve.app import steady_malloc
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(100):
        arrays = [np.ones(313_600, np.uint8) for _ in range(6)] + [np.ones(1_254_400, np.uint8)]
        del arrays
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults(); plain = faults()
steady_malloc(); faults(); steady = faults()
print(plain, steady)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    plain, steady = (int(v) for v in out.split())
    assert plain > 10_000 and steady < plain / 20, (plain, steady)
