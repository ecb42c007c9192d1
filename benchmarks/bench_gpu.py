"""The GPU engine on a GPU: the tutorial preset's speed and agreement, and one out-of-core epoch.

Prints, measured in one run:

1. the tutorial preset on ``--engine gpu``: the first run (JAX compiles the steps), then
   ``--repeat`` runs after start-up (engine made, data on the device, steps compiled):
   wall time of the whole 74-epoch run (validation and test included), epochs/s, and the
   seconds inside the engine's ``train`` and ``count_errors``;
2. agreement with the NumPy reference on the same data: epochs, test error (the chapter's
   7.489583 %), best validation error, and max ``|W - W_ref|`` of the best models;
3. one epoch of the generated 5,000,000-image set (``bench_out_of_core.py``'s data), read
   from its files in chunks and copied to the device chunk by chunk (``--max-resident``):
   examples/s, against the same engine's rate on MNIST resident.

``--platform cpu`` runs the same on JAX's CPU backend (a dry check of the benchmark on a
machine without a GPU; its figures are not the GPU's). Targets on an H100/H200-class
GPU: >= 2,000 epochs/s and the 74-epoch run in < 0.5 s.

    python benchmarks/bench_gpu.py [--platform gpu|cpu] [--data-dir DIR] [--repeat 5]
        [--ooc-images 5000000] [--ooc-dir DIR] [--max-resident 1G]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_engines import TimedEngine, cpu_model  # noqa: E402
from bench_out_of_core import generate  # noqa: E402

from logreg_mnist.config import preset  # noqa: E402
from logreg_mnist.data import load_mnist, resolve_data_dir  # noqa: E402
from logreg_mnist.data.stream import format_size, parse_size  # noqa: E402
from logreg_mnist.engines import make_engine  # noqa: E402
from logreg_mnist.train import train  # noqa: E402

TUTORIAL_EPOCHS, TUTORIAL_TEST_ERROR = 74, 7.489583  # the reference's run, %


def machine(device) -> str:
    model = cpu_model()
    import jax

    kind = getattr(device, "device_kind", "?")
    return f"JAX {jax.__version__}, device {device.platform}: {kind}; host {model}, {os.cpu_count()} cores"


def tutorial(data, repeat: int) -> tuple[float, bool]:
    """Section 1 and 2; returns (examples/s inside train on resident MNIST, whether the run agrees)."""
    config = preset("tutorial")
    t = time.perf_counter()
    engine = TimedEngine(make_engine("gpu", data, config))
    made = time.perf_counter() - t
    print(f"device: {machine(engine.device)}")
    t = time.perf_counter()
    model, history = train(data, config, None, engine=engine)
    first = time.perf_counter() - t
    print(f"\nTutorial preset, --engine gpu: engine made (data on the device) in {made:.2f} s; first run "
          f"(compiling) {first:.2f} s, {history.epochs} epochs")
    runs = []
    for _ in range(repeat):
        engine = TimedEngine(make_engine("gpu", data, config))
        t = time.perf_counter()
        model, history = train(data, config, None, engine=engine)
        runs.append((time.perf_counter() - t, engine.train_s, engine.eval_s, engine.examples))
    wall = statistics.median(r[0] for r in runs)
    train_s = statistics.median(r[1] for r in runs)
    eval_s = statistics.median(r[2] for r in runs)
    rate = runs[0][3] / train_s
    print(f"after start-up (median of {repeat}): the {history.epochs}-epoch run {wall:.3f} s, "
          f"{history.epochs / wall:,.0f} epochs/s; in train {train_s:.3f} s ({rate:,.0f} examples/s), "
          f"counting errors {eval_s:.3f} s, driver {wall - train_s - eval_s:.3f} s")
    print(f"targets (H100/H200-class GPU): >= 2,000 epochs/s: {'yes' if history.epochs / wall >= 2000 else 'no'}; "
          f"run < 0.5 s: {'yes' if wall < 0.5 else 'no'}")

    t = time.perf_counter()
    ref_model, ref = train(data, config, None, engine="numpy")
    ref_s = time.perf_counter() - t
    diff = float(np.max(np.abs(model.W.astype(np.float64) - ref_model.W)))
    agree = history.epochs == ref.epochs and history.test_error == ref.test_error
    print(f"\nAgreement with the NumPy reference (its run: {ref_s:.2f} s):")
    print("| run | epochs | test error | best validation error |")
    print("|---|---|---|---|")
    for label, h in (("gpu", history), ("numpy (reference)", ref)):
        print(f"| {label} | {h.epochs} | {h.test_error * 100:f} % | {h.best_valid_error * 100:f} % |")
    print(f"max |W - W_ref| of the best models: {diff:.3g}; same epochs and test error: {'yes' if agree else 'NO'}"
          f" (the chapter's: {TUTORIAL_EPOCHS} epochs, {TUTORIAL_TEST_ERROR:f} %)")
    if not agree:  # the first validation whose count differs, and its difference in examples
        n_valid = ref.n_valid or len(data.valid)
        for mine, theirs in zip(history.rows, ref.rows):
            if mine["valid_error"] != theirs["valid_error"]:
                print(f"first difference: epoch {theirs['epoch']}, minibatch {theirs['iteration']}: validation "
                      f"errors {round(mine['valid_error'] * n_valid)} against the reference's "
                      f"{round(theirs['valid_error'] * n_valid)} of {n_valid}")
                break
    return rate, agree


def out_of_core(mnist, n_images: int, root: Path, max_resident: int, resident_rate: float) -> None:
    """Section 3: one epoch of ``n_images`` generated images, streamed to the device."""
    directory = root / "data"
    t = time.perf_counter()
    generate(directory, n_images, mnist)
    generated = time.perf_counter() - t
    t = time.perf_counter()
    data = load_mnist(directory, download=False, progress=False)
    loaded = time.perf_counter() - t
    config = preset("tutorial")
    engine = TimedEngine(make_engine("gpu", data, config, max_resident=max_resident))
    if not engine.chunked:
        sys.exit(f"expected the {n_images:,} images to exceed --max-resident {format_size(max_resident)}")
    t = time.perf_counter()
    engine.train(range(engine.n_train_batches))
    wrong, n = engine.count_errors("valid")
    epoch = time.perf_counter() - t
    rate = engine.examples / engine.train_s
    print(f"\nOne epoch out of core: {engine.examples:,} training images ({format_size(engine.examples * 784)}) "
          f"in chunks of {engine._rows['train'].chunk_rows:,} rows (--max-resident {format_size(max_resident)})")
    print(f"generated in {generated:.1f} s, identified (load_mnist) in {loaded:.1f} s; the epoch and its validation: "
          f"{epoch:.2f} s; in train {engine.train_s:.2f} s: {rate:,.0f} examples/s "
          f"({rate / resident_rate:.2f}x the resident MNIST rate); validation error {wrong / n * 100:.4f} %")
    print(f"peak RSS of this process: {format_size(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--platform", choices=("gpu", "cpu"), default="gpu",
                        help="gpu (default), or cpu: JAX's CPU backend, a dry check without a GPU")
    parser.add_argument("--data-dir", default=None, help="MNIST directory (default: as load_mnist finds it)")
    parser.add_argument("--repeat", type=int, default=5, help="tutorial runs after start-up; medians (default: 5)")
    parser.add_argument("--ooc-images", type=int, default=5_000_000,
                        help="images of the out-of-core epoch (default: 5,000,000; 0: skip it)")
    parser.add_argument("--ooc-dir", default=None, help="where to generate them (default: a temporary directory, "
                        "deleted afterwards; about 0.8 GB per million images)")
    parser.add_argument("--max-resident", default="1G", help="memory budget of the out-of-core epoch (default: 1G)")
    args = parser.parse_args()
    if args.platform == "cpu":
        os.environ["LOGREG_MNIST_JAX_PLATFORM"] = "cpu"
    else:
        os.environ.pop("LOGREG_MNIST_JAX_PLATFORM", None)
    if args.ooc_images and args.ooc_images <= 10_000:
        parser.error("--ooc-images: expected 0 or more than the 10,000 validation images")
    max_resident = parse_size(args.max_resident)
    data_dir, _ = resolve_data_dir(args.data_dir)
    mnist = load_mnist(data_dir, progress=False)
    print(f"bench_gpu, --platform {args.platform}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    rate, agree = tutorial(mnist, args.repeat)
    if args.ooc_images:
        root = Path(args.ooc_dir) if args.ooc_dir else Path(tempfile.mkdtemp(prefix="logreg-mnist-gpu-ooc-"))
        try:
            out_of_core(mnist, args.ooc_images, root, max_resident, rate)
        finally:
            if not args.ooc_dir:
                shutil.rmtree(root, ignore_errors=True)
    sys.exit(0 if agree else 1)


if __name__ == "__main__":
    main()
