"""The page's answer time in a real browser: headless chromium (through chromedriver) drawing on
the page of `logreg-mnist serve`, on 127.0.0.1 only.

    python benchmarks/bench_page.py [--model RUN_OR_MODEL] [--drawings 50] [--screenshots DIR]

Starts the server as its own process and the browser, then draws --drawings digit-like strokes
(seeded random polylines) on the pad through pointer events dispatched in the page, one every
--step-ms for --points points each, and measures, with the page's own performance.now() marks:
  - release -> final answer shown: from the pointer's release to the moment the page has put the
    answer for the finished drawing in the document (target: p50 <= 100 ms, p99 <= 250 ms);
  - live updates while drawing: answers shown per second between press and release (target >= 15).
With --screenshots DIR it also saves three screenshots there: a class clicked (class.png), an
early snapshot replayed on a drawing (epoch.png) and the phone layout at 390x844 (phone.png).
Without --model the serve tests' hand-made run is used (no training, no data). Exits 0 when
every target is met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import itertools
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests/page_harness.py and tests/serve_run.py

from tests.page_harness import serving, start_chromium

TARGET_P50_MS, TARGET_P99_MS, TARGET_RATE = 100.0, 250.0, 15.0

STROKE_JS = """
const [points, stepMs, done] = [arguments[0], arguments[1], arguments[arguments.length - 1]];
const S = window.logregPage, pad = document.getElementById('pad');
document.getElementById('clear').click();
const r = pad.getBoundingClientRect(), at = ([x, y]) => ({clientX: r.left + x * r.width, clientY: r.top + y * r.height});
const fire = (type, p) => pad.dispatchEvent(new PointerEvent(type, {...at(p), pointerId: 7, pointerType: 'mouse',
    isPrimary: true, buttons: type === 'pointerup' ? 0 : 1, bubbles: true, cancelable: true}));
const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));
(async () => {
  const answers0 = S.perf.answers, n0 = S.perf.latencies.length, t0 = performance.now();
  fire('pointerdown', points[0]);
  for (const p of points.slice(1)) { await sleep(stepMs); fire('pointermove', p); }
  const drawn = performance.now() - t0, live = S.perf.answers - answers0;
  fire('pointerup', points[points.length - 1]);
  while (S.perf.latencies.length === n0) await sleep(1);
  done({latency: S.perf.latencies[n0], live, drawn});
})().catch((e) => done({error: String(e)}));
"""


def stroke(rng: random.Random, n: int) -> list[tuple[float, float]]:
    """A digit-like polyline: a few random control points, sampled evenly in ``n`` points."""
    ctrl = np.array([(rng.uniform(0.2, 0.8), rng.uniform(0.12, 0.88)) for _ in range(rng.randint(3, 6))])
    seg = np.linspace(0, len(ctrl) - 1, n)
    i = np.minimum(seg.astype(int), len(ctrl) - 2)
    t = (seg - i)[:, None]
    return [tuple(p) for p in ((1 - t) * ctrl[i] + t * ctrl[i + 1]).round(4).tolist()]


def wait(driver, condition: str, timeout: float = 30) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: d.execute_script(condition))


def load(driver, url: str) -> None:
    driver.get(url)
    wait(driver, "return document.body.dataset.ready === '1'")


def draw(driver, points, step_ms: float) -> dict:
    result = driver.execute_async_script(STROKE_JS, points, step_ms)
    if "error" in result:
        sys.exit("drawing failed in the page: " + result["error"])
    return result


def measure(driver, url: str, drawings: int, points: int, step_ms: float, seed: int) -> bool:
    """Draw and print the figures; True when every target is met."""
    load(driver, url)
    wait(driver, "return document.getElementById('m-note').textContent !== 'Loading…'")  # the page's last request
    rng = random.Random(seed)
    draw(driver, stroke(rng, points), step_ms)  # warm-up: the first request, caches
    latencies, rates = [], []
    for _ in range(drawings):
        r = draw(driver, stroke(rng, points), step_ms)
        latencies.append(r["latency"])
        rates.append(r["live"] / (r["drawn"] / 1000))
    lat, rate = np.array(latencies), np.array(rates)
    p50, p99 = np.percentile(lat, 50), np.percentile(lat, 99)
    print(f"{drawings} drawings of {points} points, one every {step_ms:g} ms ({points * step_ms / 1000:.2f} s each)")
    print(f"release -> final answer shown: p50 {p50:.1f} ms (target <= {TARGET_P50_MS:g}: "
          f"{'met' if p50 <= TARGET_P50_MS else 'MISSED'}), p99 {p99:.1f} ms (target <= {TARGET_P99_MS:g}: "
          f"{'met' if p99 <= TARGET_P99_MS else 'MISSED'}), min {lat.min():.1f}, max {lat.max():.1f} ms")
    print(f"live answers while drawing: median {np.median(rate):.1f}/s, slowest drawing {rate.min():.1f}/s "
          f"(target >= {TARGET_RATE:g}/s: {'met' if rate.min() >= TARGET_RATE else 'MISSED'})")
    return bool(p50 <= TARGET_P50_MS and p99 <= TARGET_P99_MS and rate.min() >= TARGET_RATE)


def screenshots(driver, url: str, out: Path) -> None:
    """class.png: a digit with another class clicked; epoch.png: the earliest snapshot replayed
    on it; phone.png: the phone layout (390x844) right after drawing."""
    out.mkdir(parents=True, exist_ok=True)
    three = [(0.3, 0.22), (0.5, 0.16), (0.68, 0.25), (0.62, 0.42), (0.46, 0.5), (0.64, 0.58), (0.7, 0.74),
             (0.52, 0.86), (0.3, 0.8)]
    fine = [p for a, b in itertools.pairwise(three) for p in np.linspace(a, b, 6)[:-1].round(4).tolist()] + [three[-1]]

    def save(name: str) -> None:
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        (out / name).write_bytes(base64.b64decode(shot["data"]))
        print(f"saved {out / name}")

    driver.set_window_size(1280, 1000)
    load(driver, url)
    driver.execute_script("document.getElementById('brush').value = 22")
    draw(driver, fine, 8)
    driver.execute_script("document.querySelector('#scores button[data-k=\"5\"]').click()")
    save("class.png")
    driver.execute_script("const s = document.getElementById('slider'); s.value = 0;"
                          "s.dispatchEvent(new Event('input'))")
    wait(driver, "return document.getElementById('answer-model').classList.contains('epoch')")
    save("epoch.png")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True})
    try:
        load(driver, url)
        driver.execute_script("document.getElementById('brush').value = 22")
        draw(driver, fine, 8)
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
        (out / "phone.png").write_bytes(base64.b64decode(shot["data"]))
        print(f"saved {out / 'phone.png'}")
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="run directory or model file (default: a hand-made run)")
    ap.add_argument("--drawings", type=int, default=50)
    ap.add_argument("--points", type=int, default=40, help="pointer positions per drawing")
    ap.add_argument("--step-ms", type=float, default=16.0, help="milliseconds between pointer moves")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--screenshots", type=Path, metavar="DIR", help="also save three screenshots in DIR")
    ap.add_argument("--chromium", default=os.environ.get("LOGREG_MNIST_CHROMIUM", "/usr/bin/chromium"))
    ap.add_argument("--chromedriver", default=os.environ.get("LOGREG_MNIST_CHROMEDRIVER", "/usr/bin/chromedriver"))
    args = ap.parse_args()
    for path in (args.chromium, args.chromedriver):
        if not shutil.which(path):
            sys.exit(f"bench_page: expected {path} (Debian: apt-get install chromium chromium-driver), found none")
    with tempfile.TemporaryDirectory(prefix="bench-page-") as tmp, contextlib.ExitStack() as stack:
        target = args.model
        if target is None:
            from tests.serve_run import make_run

            target = make_run(Path(tmp) / "run")
        try:
            url = stack.enter_context(serving(target))
        except RuntimeError as e:
            sys.exit(f"bench_page: {e}")
        driver = start_chromium(args.chromium, args.chromedriver, str(Path(tmp) / "profile"), window=(1280, 1000),
                                script_timeout=60, page_load_timeout=None)
        stack.callback(driver.quit)
        started = time.perf_counter()
        met = measure(driver, url, args.drawings, args.points, args.step_ms, args.seed)
        print(f"(measured in {time.perf_counter() - started:.1f} s; model: {args.model or 'hand-made run'})")
        if args.screenshots:
            screenshots(driver, url, args.screenshots)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
