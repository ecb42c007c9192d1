"""Out-of-core training: one epoch over 5,000,000 images (about 3.7 GiB) against the same engine in memory.

Generates an MNIST-like IDX directory (MNIST's 60,000 training images repeated,
uncompressed; labels too; MNIST's test files), each image changed: ``--kind noisy`` (the
default) adds noise in [-12, 12] to every pixel (58 % of the pixels non-zero),
``--kind mnist`` shifts it by a random -2..2 pixels each way (sparse as MNIST: 19 %).
Then trains one epoch with

    logreg-mnist train --data-dir DIR --n-epochs 1

as a subprocess and prints, all measured in this one run:

- out of core: examples per second of the epoch on the generated set with ``--engine fused``
  (over the memory budget: its chunked form, ``ChunkedFusedEngine``), the engine it ran
  with and its peak resident set size (target: below 512 MiB);
- the baseline: the same command on the first ``--baseline-images`` (200,000) of the
  same kind of images, everything resident (``--max-resident 64G``: ``FusedEngine``);
- their ratio (target: at least 0.75x); also the baseline's images read in chunks;
- the chunked NumPy engine (``--engine numpy``) on the same big data, with the same budget:
  ``--engine auto`` takes it over the budget for images denser than
  ``engines.CHUNKED_FUSED_DENSITY`` (0.3), the fused engine's chunked form for sparser ones;
- the data's density and the form each fused run read them in (sparse or dense), and the
  data's identity (the SHA-256 fingerprint that ``load_mnist`` computes) against
  one plain read of the same files.

The engine each run used is reported by the run itself (``make_engine`` is wrapped in
the child process to print its class), not inferred. Exit status: 0 when the out-of-core
run used the chunked fused engine (with ``--engine fused``), stayed below 512 MiB
and reached the ratio; 1 otherwise.

    python benchmarks/bench_out_of_core.py [DIR] [--images 5000000] [--keep]
    python benchmarks/bench_out_of_core.py --images 300000 --max-resident 64M   # a quick check
    python benchmarks/bench_out_of_core.py --images 300000 --max-resident 64M --kind mnist

DIR defaults to a temporary directory, deleted afterwards unless ``--keep`` (the full
run writes about 3.9 GB). Without ``--max-resident`` the out-of-core run uses train's
default budget (a quarter of the available memory, at most 2 GiB), which 5,000,000
images exceed; smaller runs need a smaller ``--max-resident`` to be read in chunks.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from logreg_mnist import load_mnist
from logreg_mnist.data.stream import Rows, default_max_resident, format_size
from logreg_mnist.engines.base import SGDSettings

BLOCK = 60_000  # MNIST's training images, repeated
RSS_TARGET = 512 << 20  # the out-of-core run's peak resident set, at most
RATIO_TARGET = 0.75  # the out-of-core run's examples/s against the in-memory baseline's, at least
CHUNKED_FUSED = "ChunkedFusedEngine"

# The child process: the command line, with make_engine wrapped to report the engine it made.
CHILD = """
import atexit
import importlib
import sys
training = importlib.import_module("logreg_mnist.train")  # the module (the package's "train" is the function)
made = training.make_engine
def reporting(*args, **kwargs):
    engine = made(*args, **kwargs)
    print(f"engine: {engine.name} ({type(engine).__name__}, threads={engine.threads})", file=sys.stderr, flush=True)
    layout = getattr(engine, "layout", None)  # the fused engines' forms, known once a chunk is read: at exit
    atexit.register(lambda: layout is None or print(f"form: {engine.layout['train']}", file=sys.stderr, flush=True))
    return engine
training.make_engine = reporting
from logreg_mnist.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _header(shape) -> bytes:
    return bytes([0, 0, 0x08, len(shape)]) + np.asarray(shape, ">u4").tobytes()


def shifted(images: np.ndarray, rng) -> np.ndarray:
    """``images`` (k, 784), each shifted by a random -2..2 pixels down and right (zeros come in)."""
    k = len(images)
    padded = np.zeros((k, 32, 32), images.dtype)
    padded[:, 2:30, 2:30] = images.reshape(k, 28, 28)
    dy, dx = rng.integers(0, 5, k), rng.integers(0, 5, k)
    out = np.empty((k, 28, 28), images.dtype)
    for y in range(5):
        for x in range(5):
            which = (dy == y) & (dx == x)
            out[which] = padded[which, y : y + 28, x : x + 28]
    return out.reshape(k, 784)


def changed(images: np.ndarray, kind: str, rng) -> np.ndarray:
    """uint8 ``images`` changed as ``kind`` says: ``noisy`` (noise in [-12, 12]) or ``mnist`` (shifted)."""
    if kind == "mnist":
        return shifted(images, rng)
    noise = rng.integers(-12, 13, size=images.shape, dtype=np.int16)
    return np.clip(images.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def generate(directory: Path, n_images: int, mnist, kind: str = "noisy") -> None:
    """The four IDX files: ``n_images`` training images (MNIST's repeated, each changed as ``kind`` says:
    :func:`changed`) and 9,999 test images (MNIST's, changed)."""
    directory.mkdir(parents=True, exist_ok=True)
    images = np.concatenate([mnist.train.pixels, mnist.valid.pixels])  # (60000, 784)
    labels = np.concatenate([mnist.train.labels, mnist.valid.labels]).astype(np.uint8)
    rng = np.random.default_rng(0)
    with open(directory / "train-images-idx3-ubyte", "wb") as fx, open(directory / "train-labels-idx1-ubyte", "wb") as fy:
        fx.write(_header((n_images, 28, 28)))
        fy.write(_header((n_images,)))
        for start in range(0, n_images, BLOCK):
            k = min(BLOCK, n_images - start)
            fx.write(changed(images[:k], kind, rng).tobytes())
            fy.write(labels[:k].tobytes())
            print(f"\rgenerating: {start + k:,} / {n_images:,} images", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    # MNIST's test images changed, less the last one, so that no file is MNIST's own
    test = changed(np.asarray(mnist.test.pixels), kind, rng)[:-1]
    for name, array in (("t10k-images-idx3-ubyte", test.reshape(-1, 28, 28)),
                        ("t10k-labels-idx1-ubyte", mnist.test.labels[:-1].astype(np.uint8))):
        with open(directory / name, "wb") as f:
            f.write(_header(array.shape) + np.ascontiguousarray(array).tobytes())


def run_train(data_dir: Path, out: Path, extra: list[str]) -> dict:
    """One epoch as a subprocess: wall seconds, its peak RSS (bytes), minibatches, training seconds and
    the engine it reported (``"fused (ChunkedFusedEngine, threads=16)"``)."""
    args = ["train", "--data-dir", str(data_dir), "--n-epochs", "1", "--no-progress", "--out", str(out), *extra]
    print("$ logreg-mnist " + " ".join(args), file=sys.stderr)
    start = time.perf_counter()
    with open(out.with_suffix(".stderr"), "w+") as err:
        child = subprocess.Popen([sys.executable, "-c", CHILD, *args], stdout=subprocess.DEVNULL, stderr=err)
        # The child's own high-water mark (VmHWM, reset by exec). getrusage / wait4 would also count
        # the pages of this larger process that the child shared between fork and exec.
        peak = 0
        while child.poll() is None:
            try:
                with open(f"/proc/{child.pid}/status", encoding="ascii") as f:
                    peak = max(peak, next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:")))
            except (OSError, StopIteration):
                pass
            time.sleep(0.02)
        wall = time.perf_counter() - start
        err.seek(0)
        messages = err.read()
    if child.returncode:
        sys.exit(f"the training run failed with exit code {child.returncode}:\n{messages[-2000:]}")
    engine = next((line[len("engine: "):] for line in messages.splitlines() if line.startswith("engine: ")), "?")
    form = next((line[len("form: "):] for line in messages.splitlines() if line.startswith("form: ")), "")
    row = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()][-1]
    return {"wall": wall, "peak_rss": peak, "minibatches": row["iteration"], "train_seconds": row["elapsed"],
            "engine": engine, "form": form}


def profile(data) -> dict[str, float]:
    """Rows per second, each on one core, of what an out-of-core epoch does with the training split:
    the reader thread's two jobs (positioned reads of 16 MiB chunks; their layouts, as
    ``ChunkedFusedEngine`` builds them) and the kernel (one thread, on layouts built beforehand)."""
    from logreg_mnist.engines.fused import DENSE_ABOVE, FusedEngine, _fused

    rows = Rows.for_split(data.train, 16 << 20, multiple=600)
    span = rows.chunk_rows
    starts = range(0, min(len(rows), 16 * span) - span + 1, span)
    buffer = np.empty((span, rows.n_features), np.uint8)
    sparse = _fused.Layout(rows.read(0, span, buffer), dense_above=DENSE_ABOVE).sparse  # chosen on the first chunk
    reading = building = 0.0
    for start in starts:
        began = time.perf_counter()
        pixels = rows.read(start, start + span, buffer)
        read = time.perf_counter()
        layout = _fused.Layout(pixels, dense_above=1.0 if sparse else 0.0)  # as for every later chunk
        layout.add_minibatch_columns(span, 600)
        reading, building = reading + read - began, building + time.perf_counter() - read
    n = len(starts) * span
    engine = FusedEngine(data, SGDSettings(batch_size=600, learning_rate=0.13), threads=1)
    began = time.perf_counter()
    engine.train(range(engine.n_train_batches))
    kernel = engine.n_train_batches * 600 / (time.perf_counter() - began)
    return {"read": n / reading, "layout": n / building, "kernel": kernel, "sparse": float(sparse)}


def time_identity_and_read(data_dir: Path) -> tuple[float, float]:
    """Seconds for load_mnist (which fingerprints every file) and for one plain read of the files."""
    start = time.perf_counter()
    load_mnist(data_dir, download=False, progress=False)
    identity = time.perf_counter() - start
    buffer = bytearray(32 << 20)
    start = time.perf_counter()
    for path in sorted(p for p in data_dir.iterdir() if p.is_file()):
        with open(path, "rb", buffering=0) as f:
            while f.readinto(buffer):
                pass
    return identity, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", nargs="?", default=None, help="where to generate the data (default: a temporary directory)")
    parser.add_argument("--images", type=int, default=5_000_000, help="training images to generate (default: 5,000,000)")
    parser.add_argument("--baseline-images", type=int, default=200_000,
                        help="images of the in-memory baseline run (default: 200,000)")
    parser.add_argument("--engine", default="fused", help="--engine of the fused runs (default: fused; auto takes NumPy's chunked engine for data over the budget denser than engines.CHUNKED_FUSED_DENSITY)")
    parser.add_argument("--kind", choices=("noisy", "mnist"), default="noisy",
                        help="the images: noisy (MNIST's plus noise in [-12, 12], the default) or mnist "
                             "(MNIST's shifted by -2..2 pixels each way)")
    parser.add_argument("--max-resident", default=None, help="--max-resident of the out-of-core run (default: train's)")
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    args = parser.parse_args()
    if args.images <= 10_000 or args.baseline_images <= 10_000:
        parser.error("--images and --baseline-images: expected more than the 10,000 validation images")

    mnist = load_mnist()
    n_small = min(args.baseline_images, args.images)
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="logreg-mnist-ooc-"))
    big, small = root / "data", root / "baseline-data"
    try:
        generate(big, args.images, mnist, args.kind)
        generate(small, n_small, mnist, args.kind)
        density = float(np.count_nonzero(load_mnist(small, download=False, progress=False).train.pixels[:10_000])) / (
            10_000 * 784)
        identity, read = time_identity_and_read(big)
        profiles = {"these images": profile(load_mnist(small, download=False, progress=False)), "MNIST": profile(mnist)}
        engine = ["--engine", args.engine]
        budget_flags = ["--max-resident", args.max_resident] if args.max_resident else []
        runs = {  # name: (directory, images, extra flags)
            "baseline: in memory": (small, n_small, [*engine, "--max-resident", "64G"]),
            "same images, in chunks": (small, n_small, [*engine, "--max-resident", "64M"]),
            "out of core": (big, args.images, [*engine, *budget_flags]),
            "out of core, numpy": (big, args.images, ["--engine", "numpy", *budget_flags]),
        }
        results = {name: run_train(d, root / f"run-{i}", extra) for i, (name, (d, _, extra)) in enumerate(runs.items())}
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    budget = args.max_resident or f"train's default, {format_size(default_max_resident())} now"
    print(f"data: {args.images:,} training images ({args.kind}), {format_size(args.images * 784)} of pixels, "
          f"{density:.2f} of them non-zero; engine {args.engine}; --max-resident {budget}")
    print(f"identity (load_mnist, SHA-256 of every file): {identity:.2f} s; one plain read of the files: "
          f"{read:.2f} s; ratio {identity / read:.2f}x")
    rates = {}
    for name, (_, n, _) in runs.items():
        r = results[name]
        rates[name] = min(r["minibatches"] * 600, n - 10_000) / r["train_seconds"]
        print(f"{name:<24} {n - 10_000:>10,} training images  {r['minibatches']:>6,} minibatches  "
              f"{rates[name]:>11,.0f} examples/s ({rates[name] / rates['baseline: in memory']:.2f}x)  "
              f"peak RSS {format_size(r['peak_rss']):>9}  wall {r['wall']:>6.1f} s  engine {r['engine']}"
              + (f", {r['form']}" if r["form"] else ""))
    for name, prof in profiles.items():
        print(f"profile, {name} ({'sparse' if prof['sparse'] else 'dense'}), rows/s on one core: reader: "
              f"read {prof['read']:,.0f}, layout {prof['layout']:,.0f}; kernel {prof['kernel']:,.0f}")
    result = results["out of core"]
    ratio = rates["out of core"] / rates["baseline: in memory"]
    print(f"out of core, engine {args.engine} against the chunked NumPy engine: {rates['out of core']:,.0f} / "
          f"{rates['out of core, numpy']:,.0f} examples/s = {rates['out of core'] / rates['out of core, numpy']:.2f}x")
    checks = {
        f"out of core: engine {result['engine']}": args.engine != "fused" or f"({CHUNKED_FUSED}," in result["engine"],
        f"out of core: peak RSS {format_size(result['peak_rss'])} below {format_size(RSS_TARGET)}":
            result["peak_rss"] < RSS_TARGET,
        f"out of core against in memory: {rates['out of core']:,.0f} / {rates['baseline: in memory']:,.0f} "
        f"examples/s = {ratio:.2f}x, at least {RATIO_TARGET}x": ratio >= RATIO_TARGET,
    }
    for text, ok in checks.items():
        print(f"{'ok ' if ok else 'NO '} {text}")
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
