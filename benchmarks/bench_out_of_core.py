"""Out-of-core training: one epoch over 5,000,000 images (about 3.9 GB) under 1 GiB of peak RSS.

Generates an MNIST-like IDX directory (MNIST's 60,000 training images repeated with
noise, uncompressed; labels too; MNIST's test files), then trains one epoch with

    logreg-mnist train --data-dir DIR --n-epochs 1

as a subprocess and prints its examples per second and peak resident set size (which
must stay below 1 GiB). The baseline, measured in the same run: the same command on
the first ``--baseline-images`` of the same data with everything resident
(``--max-resident 64G``). Also timed: the data's identity (the SHA-256 fingerprint that
``load_mnist`` computes) against one plain read of the same files.

    python benchmarks/bench_out_of_core.py [DIR] [--images 5000000] [--keep]
    python benchmarks/bench_out_of_core.py --images 300000 --max-resident 64M   # a quick check

DIR defaults to a temporary directory, deleted afterwards unless ``--keep``. Without
``--max-resident`` the out-of-core run uses train's default budget (a quarter of the
available memory), which 5,000,000 images exceed on a machine with less than about
60 GB available; smaller runs need a smaller ``--max-resident`` to be read in chunks.
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
from logreg_mnist.data.stream import default_max_resident, format_size

BLOCK = 60_000  # MNIST's training images, repeated
GiB = 1 << 30


def _header(shape) -> bytes:
    return bytes([0, 0, 0x08, len(shape)]) + np.asarray(shape, ">u4").tobytes()


def generate(directory: Path, n_images: int, mnist) -> None:
    """The four IDX files: ``n_images`` training images (MNIST's repeated, plus noise in [-12, 12]) and
    9,999 test images (MNIST's, plus noise)."""
    directory.mkdir(parents=True, exist_ok=True)
    images = np.concatenate([mnist.train.pixels, mnist.valid.pixels]).astype(np.int16)  # (60000, 784)
    labels = np.concatenate([mnist.train.labels, mnist.valid.labels]).astype(np.uint8)
    rng = np.random.default_rng(0)
    with open(directory / "train-images-idx3-ubyte", "wb") as fx, open(directory / "train-labels-idx1-ubyte", "wb") as fy:
        fx.write(_header((n_images, 28, 28)))
        fy.write(_header((n_images,)))
        for start in range(0, n_images, BLOCK):
            k = min(BLOCK, n_images - start)
            noise = rng.integers(-12, 13, size=(k, 784), dtype=np.int16)
            fx.write(np.clip(images[:k] + noise, 0, 255).astype(np.uint8).tobytes())
            fy.write(labels[:k].tobytes())
            print(f"\rgenerating: {start + k:,} / {n_images:,} images", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    # MNIST's test images with noise, less the last one, so that no file is MNIST's own
    noise = rng.integers(-12, 13, size=mnist.test.pixels.shape, dtype=np.int16)
    test = np.clip(mnist.test.pixels.astype(np.int16) + noise, 0, 255).astype(np.uint8)[:-1]
    for name, array in (("t10k-images-idx3-ubyte", test.reshape(-1, 28, 28)),
                        ("t10k-labels-idx1-ubyte", mnist.test.labels[:-1].astype(np.uint8))):
        with open(directory / name, "wb") as f:
            f.write(_header(array.shape) + np.ascontiguousarray(array).tobytes())


def run_train(data_dir: Path, out: Path, extra: list[str]) -> dict:
    """One epoch as a subprocess: wall seconds, its peak RSS (bytes), minibatches and training seconds."""
    command = [sys.executable, "-m", "logreg_mnist", "train", "--data-dir", str(data_dir), "--n-epochs", "1",
               "--no-progress", "--out", str(out), *extra]
    print("$ logreg-mnist " + " ".join(command[3:]), file=sys.stderr)
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL)
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
    if child.returncode:
        sys.exit(f"the training run failed with exit code {child.returncode}")
    row = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()][-1]
    return {"wall": wall, "peak_rss": peak, "minibatches": row["iteration"], "train_seconds": row["elapsed"]}


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
    parser.add_argument("--engine", default="auto", help="--engine of the runs (default: auto)")
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
        generate(big, args.images, mnist)
        generate(small, n_small, mnist)
        identity, read = time_identity_and_read(big)
        engine = ["--engine", args.engine]
        runs = {  # name: (directory, images, extra flags)
            "baseline: in memory": (small, n_small, engine + ["--max-resident", "64G"]),
            "same images, in chunks": (small, n_small, engine + ["--max-resident", "64M"]),
            "out of core": (big, args.images, engine + (["--max-resident", args.max_resident]
                                                        if args.max_resident else [])),
        }
        results = {name: run_train(d, root / f"run-{i}", extra) for i, (name, (d, _, extra)) in enumerate(runs.items())}
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    budget = args.max_resident or f"train's default, {format_size(default_max_resident())} now"
    print(f"data: {args.images:,} training images, {format_size(args.images * 784)} of pixels; engine "
          f"{args.engine}; --max-resident {budget}")
    print(f"identity (load_mnist, SHA-256 of every file): {identity:.2f} s; one plain read of the files: "
          f"{read:.2f} s; ratio {identity / read:.2f}x")
    rates = {}
    for name, (_, n, _) in runs.items():
        r = results[name]
        rates[name] = min(r["minibatches"] * 600, n - 10_000) / r["train_seconds"]
        print(f"{name:<24} {n - 10_000:>10,} training images  {r['minibatches']:>6,} minibatches  "
              f"{rates[name]:>9,.0f} examples/s ({rates[name] / rates['baseline: in memory']:.2f}x)  "
              f"peak RSS {format_size(r['peak_rss']):>9}  wall {r['wall']:.1f} s")
    result = results["out of core"]
    ok = result["peak_rss"] < GiB
    print(f"peak RSS of the out-of-core run below 1 GiB: {'yes' if ok else 'NO'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
