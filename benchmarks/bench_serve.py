"""Load on `logreg-mnist serve`: 16 clients posting drawings for a minute, on 127.0.0.1 only.

    python benchmarks/bench_serve.py [--model RUN_OR_MODEL] [--clients 16] [--seconds 60]

Starts the server as its own process, then
  1. baseline: one client posting for --baseline-seconds;
  2. load: --clients clients posting for --seconds, each waiting for its answer before the next.
The bodies are 280x280 PNG drawings like the page sends (random strokes, seeded), and with
--photo-every N every Nth body is a 1600x1200 JPEG photo-like image. Every answer is checked:
the same body must always get the same label. Prints latency percentiles, throughput, errors,
the server's resident memory (RSS, from /proc) over time, and ratios against the baseline.
Without --model a model with random weights is used (prediction cost does not depend on them).
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image, ImageDraw


def drawings(n: int, seed: int = 0) -> list[bytes]:
    """``n`` black-on-white 280x280 PNG drawings of a few random strokes."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        im = Image.new("L", (280, 280), "white")
        d = ImageDraw.Draw(im)
        points = [tuple(p) for p in rng.integers(40, 240, size=(int(rng.integers(3, 9)), 2)).tolist()]
        d.line(points, fill="black", width=20, joint="curve")
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def photo(seed: int = 1) -> bytes:
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 255, size=(120, 160, 3), dtype=np.uint8)
    im = Image.fromarray(noise).resize((1600, 1200), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Load:
    """``clients`` threads posting bodies in turn until ``stop`` is set; answers are checked."""

    def __init__(self, url: str, bodies: list[bytes], clients: int):
        self.url, self.bodies, self.clients = url, bodies, clients
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}
        self.labels: dict[int, int] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def _error(self, what: str) -> None:
        with self.lock:
            self.errors[what] = self.errors.get(what, 0) + 1

    def _client(self, k: int) -> None:
        with httpx.Client(timeout=60) as c:
            i = k
            while not self.stop.is_set():
                j = i % len(self.bodies)
                start = time.perf_counter()
                try:
                    r = c.post(self.url, content=self.bodies[j])
                except httpx.HTTPError as e:
                    self._error(type(e).__name__)
                    continue
                finally:
                    i += self.clients
                elapsed = time.perf_counter() - start
                if r.status_code != 200:
                    self._error(f"HTTP {r.status_code}")
                    continue
                label = r.json()["label"]
                with self.lock:
                    self.latencies.append(elapsed)
                    if self.labels.setdefault(j, label) != label:
                        self.errors["label changed"] = self.errors.get("label changed", 0) + 1

    def run(self, seconds: float, on_tick=None) -> float:
        threads = [threading.Thread(target=self._client, args=(k,), daemon=True) for k in range(self.clients)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        while (elapsed := time.perf_counter() - start) < seconds:
            time.sleep(min(1.0, seconds - elapsed))
            if on_tick:
                on_tick(time.perf_counter() - start)
        self.stop.set()
        for t in threads:
            t.join(60)
        return time.perf_counter() - start


def summary(name: str, load: Load, seconds: float) -> dict:
    lat = np.array(load.latencies) * 1000
    p50, p90, p99 = np.percentile(lat, [50, 90, 99]) if lat.size else (np.nan,) * 3
    n_errors = sum(load.errors.values())
    print(f"{name:<22} {lat.size:>7,} answers  {lat.size / seconds:8.1f} /s   latency ms: p50 {p50:7.1f}  "
          f"p90 {p90:7.1f}  p99 {p99:7.1f}  max {lat.max() if lat.size else np.nan:7.1f}   errors {n_errors}"
          + (f" {load.errors}" if n_errors else ""))
    return {"p50": p50, "p99": p99, "rate": lat.size / seconds, "errors": n_errors}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="run directory or model file (default: random weights)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--baseline-seconds", type=float, default=5.0)
    parser.add_argument("--photo-every", type=int, default=0, help="every Nth body a 1600x1200 JPEG (0: none)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from logreg_mnist.persistence import save_model

            rng = np.random.default_rng(0)
            model = str(Path(tmp) / "random.safetensors")
            save_model(model, (0.01 * rng.standard_normal((784, 10))).astype(np.float32), np.zeros(10, np.float32))
        bodies = drawings(40)
        if args.photo_every:
            big = photo()
            bodies = [big if i % args.photo_every == 0 else b for i, b in enumerate(bodies)]
        server = subprocess.Popen([sys.executable, "-m", "logreg_mnist", "serve", model, "--host", "127.0.0.1",
                                   "--port", "0"], stdout=subprocess.PIPE, text=True)
        try:
            url = server.stdout.readline().split(" at ")[1].split()[0] + "api/predict"
            print(f"server pid {server.pid} at {url}; bodies: {len(bodies)}, "
                  f"{np.mean([len(b) for b in bodies]) / 1024:.1f} KiB on average")
            rss_start = rss_mib(server.pid)
            baseline_load = Load(url, bodies, 1)
            base = summary("baseline, 1 client", baseline_load, baseline_load.run(args.baseline_seconds))
            rss_warm = rss_mib(server.pid)
            samples = []
            step = max(1, round(args.seconds / 10))

            def tick(t: float) -> None:
                samples.append((t, rss_mib(server.pid)))

            load = Load(url, bodies, args.clients)
            loaded = summary(f"load, {args.clients} clients", load, load.run(args.seconds, tick))
            rss_end = rss_mib(server.pid)
        finally:
            server.terminate()
            server.wait(30)
    print("server RSS (MiB) over the load: " + "  ".join(f"{t:.0f}s {r:.1f}" for t, r in samples
                                                       if round(t) % step == 0 or t == samples[-1][0]))
    print(f"server RSS: at start {rss_start:.1f} MiB, after the baseline {rss_warm:.1f}, end {rss_end:.1f}, "
          f"max {max(r for _, r in samples):.1f}; end / after-baseline ratio {rss_end / rss_warm:.3f}")
    print(f"ratios, {args.clients} clients vs 1: throughput {loaded['rate'] / base['rate']:.2f}x, "
          f"p50 latency {loaded['p50'] / base['p50']:.2f}x, p99 latency {loaded['p99'] / base['p99']:.2f}x; "
          f"errors {loaded['errors'] + base['errors']}")
    return 0 if loaded["errors"] + base["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
