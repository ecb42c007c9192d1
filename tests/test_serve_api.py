"""`logreg-mnist serve`: the API through Starlette's test client and through a real uvicorn
server on 127.0.0.1 (bounded bodies, path traversal, concurrency), and the command itself."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image

with warnings.catch_warnings():  # Starlette prefers the httpx2 fork; httpx works the same here
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from logreg_mnist import images
from logreg_mnist.cli import main
from logreg_mnist.persistence import load_model, save_model
from logreg_mnist.predict import predict_files
from logreg_mnist.serve import MAX_BODY_BYTES, RunView, create_app
from logreg_mnist.serve.app import bind

from .serve_run import drawing, make_run, png_bytes


@pytest.fixture(scope="module")
def live(run_dir):
    """A real uvicorn server on 127.0.0.1 in a thread: yields its port."""
    import uvicorn

    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(RunView(run_dir)), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "the server did not start"
    yield sock.getsockname()[1]
    server.should_exit = True
    thread.join(10)
    sock.close()


def huge_png(side: int) -> bytes:
    """A PNG whose header claims side x side pixels (its data is a stub: nothing to decode)."""
    data = bytearray(png_bytes(Image.new("L", (1, 1))))
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr : ihdr + 8] = struct.pack(">II", side, side)
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13])))
    return bytes(data)


# ---- the page and the run ---------------------------------------------------------------------------

def test_the_page_is_served_and_fetches_nothing_from_the_network(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert '<canvas id="pad"' in page and "/api/predict" in page and "/api/run" in page
    for attribute in ('src="http', "src='http", 'href="http', "href='http", "@import", "//cdn"):
        assert attribute not in page


def test_run_describes_dataset_classes_config_best_and_history(client):
    run = client.get("/api/run").json()
    assert run["kind"] == "run" and run["name"] == "run" and run["dataset"] == "hand-made"
    assert run["class_names"] == [str(k) for k in range(10)]
    assert run["config"]["optimizer"] == "sgd" and run["unit"] == "epoch"
    assert run["best"] == {"epoch": 3, "iteration": 30, "valid_error": 0.1, "test_error": 0.11, "n_valid": None,
                           "n_test": None}  # this hand-made model records no denominators
    assert [row["epoch"] for row in run["history"]] == [1, 2, 3] and run["history"][0]["test_error"] is None
    assert run["snapshots"] == [1, 2, 3]
    assert len(run["palette"]) == 256 and run["palette"][0][2] > run["palette"][0][0]  # blue at the negative end
    assert run["palette"][-1][0] > run["palette"][-1][2] and min(run["palette"][128]) > 240  # red, white at 0


def test_class_names_come_from_the_model_metadata(tmp_path):
    W, b = np.zeros((784, 3), np.float32), np.zeros(3, np.float32)
    save_model(tmp_path / "m.safetensors", W, b, {"class_names": ["cat", "dog", "cow"]})
    assert RunView(tmp_path / "m.safetensors").class_names == ["cat", "dog", "cow"]


def test_weights_and_snapshots_share_one_scale(client, run_dir):
    model, _ = load_model(run_dir)
    best = client.get("/api/weights").json()
    assert best["best"] is True and best["epoch"] == 3
    np.testing.assert_allclose(np.array(best["maps"]), model.W.T.reshape(10, 28, 28), atol=1e-5)
    first = client.get("/api/snapshots/1").json()
    assert first["epoch"] == 1 and first["limit"] == best["limit"] == pytest.approx(np.abs(model.W).max())
    np.testing.assert_allclose(np.array(first["maps"]), model.W.T.reshape(10, 28, 28) / 3, atol=1e-5)
    missing = client.get("/api/snapshots/7")
    assert missing.status_code == 404 and "no snapshot of epoch 7: the run has 1, 2, 3" in missing.json()["error"]


def test_learning_curves_are_a_png(client):
    r = client.get("/api/learning-curves.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert Image.open(__import__("io").BytesIO(r.content)).size[0] > 300


def test_a_model_file_alone_has_weights_but_no_history(run_dir):
    c = TestClient(create_app(RunView(run_dir / "best.safetensors")))
    run = c.get("/api/run").json()
    assert run["kind"] == "model" and run["history"] == [] and run["snapshots"] == []
    r = c.get("/api/learning-curves.png")
    assert r.status_code == 404 and "no learning curves" in r.json()["error"]
    assert c.post("/api/predict", content=png_bytes(drawing("1"))).json()["label"] == 1


def test_a_diverged_history_is_still_valid_json(tmp_path):
    run = make_run(tmp_path / "run")
    (run / "history.jsonl").write_text('{"epoch": 1, "train_nll": NaN, "valid_error": Infinity, "test_error": null}\n')
    r = TestClient(create_app(RunView(run))).get("/api/run")
    assert r.status_code == 200 and r.json()["history"][0]["train_nll"] is None
    assert r.json()["history"][0]["valid_error"] is None
    assert TestClient(create_app(RunView(run))).get("/api/learning-curves.png").status_code == 200


def test_a_model_not_for_28x28_images_is_refused(tmp_path, capsys):
    save_model(tmp_path / "m.safetensors", np.zeros((64, 10), np.float32), np.zeros(10, np.float32))
    assert main(["serve", str(tmp_path / "m.safetensors"), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "expected a model of 28x28 = 784 inputs to draw digits for, found 64 inputs" in err
    assert main(["serve", str(tmp_path / "none"), "--port", "0"]) == 2
    assert "cannot read model file" in capsys.readouterr().err


# ---- predictions ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, fmt, mode", [("0", "PNG", "L"), ("1", "PNG", "RGBA"), ("0", "JPEG", "RGB"),
                                             ("1", "PNG", "RGB")])
def test_predictions_equal_predict(client, run_dir, tmp_path, kind, fmt, mode):
    im = drawing(kind, size=200, mode=mode)
    path = tmp_path / f"digit.{fmt.lower()}"
    im.save(path, format=fmt)
    expected = predict_files(load_model(run_dir)[0], [path])[0]
    r = client.post("/api/predict", content=path.read_bytes())
    assert r.status_code == 200
    answer = r.json()
    assert answer["label"] == expected.label == int(kind) and answer["name"] == kind
    assert answer["probabilities"][answer["label"]] == pytest.approx(expected.probability, abs=1e-6)
    assert sum(answer["probabilities"]) == pytest.approx(1.0, abs=1e-5) and len(answer["probabilities"]) == 10
    prepared = images.prepare(images.open_image(path))
    assert answer["prepared"] == prepared.pixels.tolist()
    assert answer["inverted"] is True and answer["blank"] is False


def test_evidence_is_input_times_weights_and_adds_up_to_the_scores(client, run_dir):
    model, _ = load_model(run_dir)
    answer = client.post("/api/predict", content=png_bytes(drawing("0"))).json()
    x = np.array(answer["prepared"], dtype=np.float64).reshape(-1) / 256
    ev = answer["evidence"]
    probs = np.array(answer["probabilities"])
    assert ev["classes"] == list(np.argsort(-probs)[:2]) and ev["classes"][0] == answer["label"] == 0
    logits = x @ model.W.astype(np.float64) + model.b
    for c, m, total, bias in zip(ev["classes"], ev["maps"], ev["totals"], ev["biases"]):
        m = np.array(m)
        assert m.shape == (28, 28)
        np.testing.assert_allclose(m.reshape(-1), x * model.W[:, c], atol=2e-6)
        assert total + bias == pytest.approx(logits[c], abs=1e-4)
    assert ev["limit"] == pytest.approx(np.abs(np.array(ev["maps"])).max(), abs=1e-5)


def test_a_blank_drawing_is_said_to_be_blank(client):
    answer = client.post("/api/predict", content=png_bytes(Image.new("L", (280, 280), "white"))).json()
    assert answer["blank"] is True and answer["prepared"] == np.zeros((28, 28), int).tolist()


def test_raw_takes_a_28x28_image_as_it_is(client):
    pixels = np.zeros((28, 28), np.uint8)
    pixels[0:6, 0:6] = 200  # a light square in a corner: cropping and centring would move it
    body = png_bytes(Image.fromarray(pixels))
    assert client.post("/api/predict?raw=1", content=body).json()["prepared"] == pixels.tolist()
    assert client.post("/api/predict", content=png_bytes(Image.fromarray(np.pad(pixels, 20)))).json()["prepared"] \
        != pixels.tolist()
    r = client.post("/api/predict?raw=1", content=png_bytes(drawing("1")))
    assert r.status_code == 422 and "expected a 28x28 image with raw=True" in r.json()["error"]
    r = client.post("/api/predict?raw=yes", content=body)
    assert r.status_code == 400 and r.json() == {"error": "raw: expected 0 or 1, found 'yes'"}


# ---- bad requests: 4xx with a JSON error, never a 500 ----------------------------------------------

@pytest.mark.parametrize("body, status, words", [
    (b"", 400, "empty body: expected the bytes of an image"),
    (b"hello, not an image", 422, "That file is not an image: expected PNG, JPEG"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, 422, "That file is not an image"),
])
def test_bad_bodies_are_named(client, body, status, words):
    r = client.post("/api/predict", content=body)
    assert r.status_code == status and words in r.json()["error"]


def test_a_truncated_image_and_too_many_pixels_are_422(client):
    r = client.post("/api/predict", content=png_bytes(drawing("1"))[:300])
    assert r.status_code == 422 and "the request body" in r.json()["error"]
    side = int(np.sqrt(images.MAX_PIXELS)) + 1
    r = client.post("/api/predict", content=huge_png(side))
    assert r.status_code == 422 and "pixels" in r.json()["error"]


def test_a_body_over_the_limit_is_413(client):
    r = client.post("/api/predict", content=b"\0" * (MAX_BODY_BYTES + 1))
    assert r.status_code == 413
    assert r.json() == {"error": f"expected a body of at most {MAX_BODY_BYTES:,} bytes, found {MAX_BODY_BYTES + 1:,}"}

    def chunks():  # no Content-Length: refused while reading
        for _ in range(6):
            yield b"\0" * 1_000_000

    r = client.post("/api/predict", content=chunks())
    assert r.status_code == 413 and "at most 5,000,000 bytes" in r.json()["error"]


def test_unknown_paths_and_methods_are_json(client):
    assert client.get("/nothing").json() == {"error": "Not Found"}
    r = client.get("/api/predict")
    assert r.status_code == 405 and r.json() == {"error": "Method Not Allowed"}
    assert client.delete("/api/run").status_code == 405


def test_random_and_damaged_bodies_never_cause_a_500(client):
    rng = np.random.default_rng(0)
    good = png_bytes(drawing("0", size=64))
    bodies = [rng.bytes(int(n)) for n in rng.integers(1, 3000, 10)]
    for _ in range(20):
        damaged = bytearray(good)
        for i in rng.integers(8, len(good), 4):
            damaged[i] = int(rng.integers(0, 256))
        bodies.append(bytes(damaged))
    bodies += [good[:n] for n in (8, 16, 33, 60)]
    for body in bodies:
        r = client.post("/api/predict", content=body)
        assert r.status_code in (200, 422), (r.status_code, r.text)
        assert ("label" in r.json()) if r.status_code == 200 else ("error" in r.json())


# ---- a real server on 127.0.0.1 ----------------------------------------------------------------------

def raw_request(port: int, method: str, path: str) -> tuple[int, bytes]:
    """Send ``path`` exactly as written (no client-side normalisation of ``..``)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.mark.parametrize("path", [
    "/../pyproject.toml", "/../../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/best.safetensors",
    "/history.jsonl", "/config.json", "/snapshots/epoch-0001.safetensors", "/api/snapshots/..%2F..%2Fbest",
    "/api/snapshots/1/../../best.safetensors", "/api/weights/../../best.safetensors", "/static/index.html",
    "/static/../app.py", "/api/snapshots/-1", "/api/snapshots/0001.safetensors", "//etc/passwd",
    "/api/snapshots/%00", "/serve/app.py",
])
def test_no_path_reaches_a_file(live, path):
    status, body = raw_request(live, "GET", path)
    assert status in (400, 404), (status, body[:200])
    assert b"safetensors" not in body and b"root:" not in body and b"[build-system]" not in body


def read_all(s: socket.socket) -> bytes:
    """What the server sends until it closes the connection."""
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return data


def test_a_huge_declared_body_is_refused_before_it_is_sent(live):
    with socket.create_connection(("127.0.0.1", live), timeout=10) as s:
        s.sendall(b"POST /api/predict HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000000\r\n\r\n"
                  + b"\0" * 65536)
        response = read_all(s)  # answered though 99.9 MB were never sent
    assert response.startswith(b"HTTP/1.1 413")
    assert b"expected a body of at most 5,000,000 bytes, found 100,000,000" in response


def test_a_chunked_flood_is_cut_off_after_the_limit(live):
    sent = 0
    response = b""
    with socket.create_connection(("127.0.0.1", live), timeout=10) as s:
        s.sendall(b"POST /api/predict HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n" % 500_000 + b"\0" * 500_000 + b"\r\n"
        try:
            while sent < 40_000_000:
                s.sendall(chunk)
                sent += 500_000
                s.setblocking(False)
                try:
                    response = s.recv(65536)
                except BlockingIOError:
                    pass
                s.setblocking(True)
                if response:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        s.settimeout(10)
        response += read_all(s)
    assert response.startswith(b"HTTP/1.1 413"), response[:100]
    assert sent < 20_000_000


def test_concurrent_clients_get_their_own_answers(live):
    bodies = {"0": png_bytes(drawing("0")), "1": png_bytes(drawing("1")), "junk": b"not an image"}
    url = f"http://127.0.0.1:{live}/api/predict"

    def client_work(i: int) -> list[tuple[str, int, object]]:
        results = []
        with httpx.Client(timeout=30) as c:
            for j in range(4):
                kind = ("0", "1", "junk")[(i + j) % 3]
                r = c.post(url, content=bodies[kind])
                results.append((kind, r.status_code, r.json().get("label")))
        return results

    with ThreadPoolExecutor(16) as pool:
        results = [x for batch in pool.map(client_work, range(16)) for x in batch]
    assert len(results) == 64
    for kind, status, label in results:
        assert (status, label) == ((422, None) if kind == "junk" else (200, int(kind)))


def test_concurrent_requests_in_one_event_loop(run_dir):
    app = create_app(RunView(run_dir), image_workers=2)
    bodies = [png_bytes(drawing(str(i % 2), size=100 + 10 * i)) for i in range(24)]

    async def all_at_once():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return await asyncio.gather(*(c.post("/api/predict", content=b) for b in bodies))

    answers = asyncio.run(all_at_once())
    sequential = TestClient(app)
    for body, r in zip(bodies, answers):
        assert r.status_code == 200 and r.json() == sequential.post("/api/predict", content=body).json()


# ---- the command ------------------------------------------------------------------------------------

def test_serve_prints_its_url_and_stops_cleanly_on_ctrl_c(run_dir):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "logreg_mnist", "serve", str(run_dir), "--host", "0.0.0.0",
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line.startswith(f"serving {run_dir} at http://0.0.0.0:") and "(Ctrl-C to stop)" in line
        port = int(line.split("http://0.0.0.0:")[1].split("/")[0])
        status, body = raw_request(port, "GET", "/api/run")
        assert status == 200 and json.loads(body)["name"] == "run"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode in (0, 130)
    assert "Traceback" not in err
    assert "warning: listening on 0.0.0.0: anyone who can reach this address can use the page; " \
           "it has no authentication" in err


def test_a_port_in_use_is_a_user_error(run_dir, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["serve", str(run_dir), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"logreg-mnist serve: error: --host 127.0.0.1 --port {port}: cannot listen there: " in err
    assert main(["serve", str(run_dir), "--port", "70000"]) == 2
    assert "--port: expected 0-65535, found 70000" in capsys.readouterr().err
