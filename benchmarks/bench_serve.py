"""Load on `logreg-mnist serve` against a bare Starlette app, the same client for both, on 127.0.0.1.

    python benchmarks/bench_serve.py [--model RUN_OR_MODEL] [--clients 32] [--seconds 30] [--rounds 3]
                                     [--workers N] [--photo-every N]
    python benchmarks/bench_serve.py --seconds 10 --rounds 1     # a quick check
    python benchmarks/bench_serve.py --seconds 600 --rounds 1 --bare-seconds 60   # the 10-minute soak: is memory flat?

Each server is started as its own process, warmed up, then loaded by --clients clients for
--seconds, each posting the next body as soon as it has its answer (keep-alive
connections, one asyncio client process, raw HTTP/1.1), in --rounds rounds of both (the
machine's speed drifts over minutes; the ratio is each round's, and their median is judged):

  1. bare: a Starlette app on uvicorn (``--bare-app``, this script) whose one route reads
     the body and answers a small JSON: the framework's own rate on this machine;
  2. serve: ``logreg-mnist serve --workers N`` (N: --workers, by default what serve starts
     for a classroom, one per core up to 8), its ``/api/predict?explain=0`` as the page calls it.

The bodies are 280x280 RGBA PNG drawings as the page's pad sends them: seeded random strokes
of several widths drawn on a canvas in headless Chromium and encoded by its ``toDataURL``, the
page's own encoder (--pillow-drawings, or no Chromium: drawn and encoded by Pillow, whose
filters and compression make them slower to decode); with --photo-every N every Nth is a
1600x1200 JPEG instead.
Every answer is checked (status 200; the same body always gets the same label).

Prints first what one drawing costs in process (CPU: decoded, prepared, the whole answer);
for both servers: answers, rate, latency percentiles (p50, p90, p99, max), errors, and the
server's CPU time per answer (from /proc; the machine's load average is printed too); then
the ratio serve / bare of each round and their median (target >= 0.25), serve's p99 in its
worst round (target <= 150 ms), errors (target 0), and the server's resident memory (RSS of
all its processes, from /proc) over each run, with a flat / not flat verdict: the mean of the
last minute against the first (the last and first fifth of the run when it is shorter than
5 minutes); flat when it grew by less than 5 % and 20 MiB. Exit status 0 when every target
is met.
Without --model a model with random weights is used (the cost does not depend on them).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HOST = "127.0.0.1"
TARGET_RATIO = 0.25
TARGET_P99_MS = 150.0


PAD_JS = """
const [strokes, side] = arguments, pad = document.createElement('canvas'), ctx = pad.getContext('2d');
pad.width = pad.height = side;
return strokes.map(([width, points]) => {  // as the page's pad: white, then round black strokes
  ctx.fillStyle = '#fff'; ctx.fillRect(0, 0, side, side);
  ctx.lineWidth = width; ctx.lineCap = ctx.lineJoin = 'round'; ctx.strokeStyle = '#000';
  ctx.beginPath(); ctx.moveTo(...points[0]); for (const p of points.slice(1)) ctx.lineTo(...p); ctx.stroke();
  return pad.toDataURL('image/png');
});
"""


def _strokes(n: int, seed: int) -> list[tuple[int, list[tuple[int, int]]]]:
    """``n`` seeded random drawings: a brush width (8-27 px) and 3-8 points of a polyline on 280x280."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        points = [tuple(p) for p in rng.integers(40, 240, size=(int(rng.integers(3, 9)), 2)).tolist()]
        out.append((int(rng.integers(8, 28)), points))
    return out


def drawings(n: int, seed: int = 0, *, browser: bool = True) -> tuple[list[bytes], str]:
    """``n`` 280x280 RGBA PNG drawings as the page's pad sends them: a few random black strokes
    on white, drawn and encoded by headless Chromium's canvas (``toDataURL``, the page's own
    encoder, whose filters and compression set the cost of decoding); Pillow's drawing and
    encoder when ``browser`` is False or no Chromium is found. Returns the bodies and what made them."""
    strokes = _strokes(n, seed)
    if browser:
        try:
            return _browser_drawings(strokes), "Chromium's canvas"
        except Exception as e:  # noqa: BLE001 - no browser here: say so and use Pillow's
            print(f"(no headless Chromium for the drawings: {e}; Pillow draws and encodes them instead)", flush=True)
    out = []
    for width, points in strokes:
        im = Image.new("RGBA", (280, 280), (255, 255, 255, 255))
        ImageDraw.Draw(im).line(points, fill=(0, 0, 0, 255), width=width, joint="curve")
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        out.append(buf.getvalue())
    return out, "Pillow"


def _browser_drawings(strokes: list) -> list[bytes]:
    import base64
    import shutil

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests/page_harness.py
    from tests.page_harness import start_chromium

    chromium = os.environ.get("LOGREG_MNIST_CHROMIUM", "/usr/bin/chromium")
    chromedriver = os.environ.get("LOGREG_MNIST_CHROMEDRIVER", "/usr/bin/chromedriver")
    for path in (chromium, chromedriver):
        if not shutil.which(path):
            raise RuntimeError(f"expected {path} (Debian: apt-get install chromium chromium-driver), found none")
    with tempfile.TemporaryDirectory() as profile:
        driver = start_chromium(chromium, chromedriver, profile, script_timeout=60)
        try:
            driver.get("about:blank")
            urls = driver.execute_script(PAD_JS, strokes, 280)
        finally:
            driver.quit()
    return [base64.b64decode(url.split(",", 1)[1]) for url in urls]


def photo(seed: int = 1) -> bytes:
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 255, size=(120, 160, 3), dtype=np.uint8)
    im = Image.fromarray(noise).resize((1600, 1200), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


# ---- the bare app ----------------------------------------------------------------------------------


def bare_app() -> int:
    """Serve the bare Starlette app on a free port of 127.0.0.1; print its URL as serve does."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def predict(request: Request) -> JSONResponse:
        body = await request.body()
        return JSONResponse({"label": len(body) % 10})

    app = Starlette(routes=[Route("/api/predict", predict, methods=["POST"])])
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # as serve's: TCP_NODELAY
    sock.bind((HOST, 0))
    sock.listen(128)
    print(f"serving the bare app at http://{HOST}:{sock.getsockname()[1]}/  (Ctrl-C to stop)", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])
    return 0


# ---- the client ------------------------------------------------------------------------------------


class Load:
    """``clients`` keep-alive connections posting bodies in turn; latencies and errors recorded."""

    def __init__(self, port: int, path: str, bodies: list[bytes], clients: int):
        self.port, self.path, self.bodies, self.clients = port, path, bodies, clients
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}
        self.labels: dict[int, int] = {}

    def _error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    async def _exchange(self, reader, writer, body: bytes) -> tuple[int, bytes]:
        writer.write(
            f"POST {self.path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\nContent-Type: image/png\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = next(int(v) for k, _, v in (x.partition(":") for x in lines[1:]) if k.lower() == "content-length")
        return status, await reader.readexactly(length)

    async def _client(self, k: int, until: float, record: bool) -> None:
        i = k
        reader = writer = None
        while time.perf_counter() < until:
            j = i % len(self.bodies)
            i += self.clients
            start = time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(HOST, self.port)
                status, answer = await asyncio.wait_for(self._exchange(reader, writer, self.bodies[j]), 60)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as e:
                if record:
                    self._error(type(e).__name__)
                if writer is not None:
                    writer.close()
                reader = writer = None
                continue
            elapsed = time.perf_counter() - start
            if not record:
                continue
            if status != 200:
                self._error(f"HTTP {status}")
                continue
            label = json.loads(answer)["label"]
            self.latencies.append(elapsed)
            if self.labels.setdefault(j, label) != label:
                self._error("label changed")
        if writer is not None:
            writer.close()

    def run(self, seconds: float, *, record: bool = True) -> float:
        async def all_clients() -> float:
            start = time.perf_counter()
            await asyncio.gather(*(self._client(k, start + seconds, record) for k in range(self.clients)))
            return time.perf_counter() - start

        return asyncio.run(all_clients())


def summary(name: str, load: Load, seconds: float) -> dict:
    lat = np.array(load.latencies) * 1000
    p50, p90, p99 = np.percentile(lat, [50, 90, 99]) if lat.size else (np.nan,) * 3
    n_errors = sum(load.errors.values())
    print(
        f"{name:<34} {lat.size:>8,} answers {lat.size / seconds:9.1f} /s   latency ms: p50 {p50:7.1f}  "
        f"p90 {p90:7.1f}  p99 {p99:7.1f}  max {lat.max() if lat.size else np.nan:7.1f}   errors {n_errors}"
        + (f" {load.errors}" if n_errors else ""),
        flush=True,
    )
    return {"p50": p50, "p99": p99, "rate": lat.size / seconds, "errors": n_errors}


# ---- the servers and their memory ------------------------------------------------------------------


def processes(pid: int) -> list[int]:
    """``pid`` and its descendants (serve's worker processes)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        path = Path(f"/proc/{p}/task/{p}/children")
        if path.exists():
            todo.extend(int(c) for c in path.read_text().split())
    return found


def rss_mib(pid: int) -> float:
    """The resident memory of ``pid`` and its descendants, MiB."""
    total = 0
    for p in processes(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total / 1024


def cpu_seconds(pid: int) -> float:
    """The CPU time (user and system) of ``pid`` and its descendants so far, seconds."""
    total = 0
    for p in processes(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (FileNotFoundError, IndexError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def per_drawing(model: str, bodies: list[bytes]) -> None:
    """What one drawing costs in this process (CPU, best of 3 passes over the bodies): its PNG
    decoded to gray levels, those prepared as MNIST, and the whole answer (JSON included)."""
    from logreg_mnist.images import prepare_levels
    from logreg_mnist.serve import RunView
    from logreg_mnist.serve.app import answer_json, steady_malloc
    from logreg_mnist.serve.canvas import canvas_gray

    steady_malloc()  # as serve does
    view = RunView(model)
    view.warm_up()

    def best(f, items) -> float:
        times = []
        for _ in range(3):
            began = time.process_time()
            for item in items:
                f(item)
            times.append((time.process_time() - began) / len(items) * 1000)
        return min(times)

    levels = [canvas_gray(b) for b in bodies]
    decode = best(canvas_gray, bodies)
    prepared = best(prepare_levels, levels)
    answer = best(lambda b: answer_json(view.predict(b, explain=False)), bodies)
    print(
        f"one drawing in process (CPU ms): decoded {decode:.2f}, prepared {prepared:.2f}, whole answer {answer:.2f}",
        flush=True,
    )


def start(command: list[str]) -> tuple[subprocess.Popen, int]:
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline()
    if " at http://" not in line:
        server.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    threading.Thread(target=server.stdout.read, daemon=True).start()  # keep its pipe drained
    return server, int(line.split(" at http://")[1].split("/")[0].rsplit(":", 1)[1])


def measure(
    name: str,
    command: list[str],
    path: str,
    bodies: list[bytes],
    args,
    rss: list | None = None,
    seconds: float | None = None,
) -> dict:
    server, port = start(command)
    try:
        time.sleep(1.0)  # the workers start
        Load(port, path, bodies, args.clients).run(args.warmup, record=False)
        load = Load(port, path, bodies, args.clients)
        stop = threading.Event()

        def sample() -> None:
            began = time.perf_counter()
            while not stop.wait(1.0):
                if rss is not None:
                    rss.append((time.perf_counter() - began, rss_mib(server.pid)))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        used = cpu_seconds(server.pid)
        result = summary(name, load, load.run(args.seconds if seconds is None else seconds))
        used = cpu_seconds(server.pid) - used
        stop.set()
        sampler.join(5)
        if load.latencies:
            print(f"{'':<34} server CPU per answer {used / len(load.latencies) * 1000:.3f} ms", flush=True)
        return result
    finally:
        server.terminate()
        server.wait(30)


def memory_verdict(samples: list[tuple[float, float]], seconds: float) -> bool:
    if len(samples) < 2:
        print("server RSS: too few samples for a verdict")
        return False
    window = 60.0 if seconds >= 300 else seconds / 5
    first = [r for t, r in samples if t <= window] or [samples[0][1]]
    last = [r for t, r in samples if t >= samples[-1][0] - window] or [samples[-1][1]]
    a, b = float(np.mean(first)), float(np.mean(last))
    flat = b - a < max(0.0, min(0.05 * a, 20.0)) or b <= a
    step = max(1, len(samples) // 10)
    print("server RSS (MiB) over the run: " + "  ".join(f"{t:.0f}s {r:.1f}" for t, r in samples[::step]))
    print(
        f"server RSS: first {window:.0f} s {a:.1f} MiB, last {window:.0f} s {b:.1f} MiB "
        f"({b - a:+.1f} MiB, {(b - a) / a:+.1%}): {'flat' if flat else 'NOT flat'}"
    )
    return flat


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="run directory or model file (default: random weights)")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument(
        "--seconds", type=float, default=30.0, help="each measurement (600 with --rounds 1: the memory soak)"
    )
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before each measurement")
    parser.add_argument(
        "--workers", type=int, default=None, help="serve --workers (default: a classroom's, one per core up to 8)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="bare then serve, this many times; the ratio is the median (default: 3)"
    )
    parser.add_argument("--photo-every", type=int, default=0, help="every Nth body a 1600x1200 JPEG (0: none)")
    parser.add_argument(
        "--bare-seconds", type=float, default=None, help="the bare app's measurement (default: --seconds)"
    )
    parser.add_argument(
        "--pillow-drawings",
        action="store_true",
        help="drawings made by Pillow (default: by headless Chromium's canvas)",
    )
    parser.add_argument("--bare-app", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rounds < 1 or args.seconds <= 0 or args.clients < 1:
        parser.error(
            f"expected --rounds >= 1, --seconds > 0 and --clients >= 1, found {args.rounds}, "
            f"{args.seconds:g} and {args.clients}"
        )
    if args.bare_app:
        return bare_app()

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from logreg_mnist.persistence import save_model

            rng = np.random.default_rng(0)
            model = str(Path(tmp) / "random.safetensors")
            save_model(model, (0.01 * rng.standard_normal((784, 10))).astype(np.float32), np.zeros(10, np.float32))
        bodies, made_by = drawings(64, browser=not args.pillow_drawings)
        if args.photo_every:
            big = photo()
            bodies = [big if i % args.photo_every == 0 else b for i, b in enumerate(bodies)]
        print(
            f"{args.clients} clients, {args.seconds:g} s each after {args.warmup:g} s of warm-up; {len(bodies)} bodies "
            f"(drawn by {made_by}), {np.mean([len(b) for b in bodies]) / 1024:.1f} KiB on average; {os.cpu_count()} cores, "
            f"load average {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        per_drawing(model, [b for b in bodies if b.startswith(b"\x89PNG")])
        from logreg_mnist.serve.workers import default_workers

        workers = args.workers or default_workers()
        serve_cmd = [sys.executable, "-m", "logreg_mnist", "serve", model, "--host", HOST, "--port", "0"]
        serve_cmd += ["--workers", str(workers)]
        shown = f"logreg-mnist serve, {workers} worker{'s' if workers > 1 else ''}"
        ratios, p99s, errors, flat = [], [], 0, True
        for k in range(args.rounds):
            if args.rounds > 1:
                print(f"-- round {k + 1} of {args.rounds}", flush=True)
            bare = measure(
                "bare Starlette app on uvicorn",
                [sys.executable, __file__, "--bare-app"],
                "/api/predict",
                bodies,
                args,
                seconds=args.bare_seconds,
            )
            samples: list[tuple[float, float]] = []
            served = measure(shown, serve_cmd, "/api/predict?explain=0", bodies, args, samples)
            ratios.append(served["rate"] / bare["rate"] if bare["rate"] else float("nan"))
            p99s.append(served["p99"])
            errors += served["errors"] + bare["errors"]
            print(f"ratio serve / bare: {ratios[-1]:.3f}", flush=True)
            flat = memory_verdict(samples, args.seconds) and flat
    ratio = float(np.median(ratios))
    if args.rounds > 1:
        print(
            f"ratio serve / bare, median of {args.rounds} rounds: {ratio:.3f} (rounds: "
            + ", ".join(f"{r:.3f}" for r in ratios)
            + f"; target >= {TARGET_RATIO})"
        )
    else:
        print(f"ratio serve / bare: {ratio:.3f} (target >= {TARGET_RATIO})")
    print(f"serve p99 latency: {max(p99s):.1f} ms, the worst round (target <= {TARGET_P99_MS:g} ms)")
    print(f"errors: {errors} (target 0); load average now {os.getloadavg()[0]:.2f}")
    met = ratio >= TARGET_RATIO and max(p99s) <= TARGET_P99_MS and errors == 0 and flat
    print("every target met" if met else "some target not met")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
