"""Speed and peak memory of ``train`` on the tutorial preset, against a plain NumPy loop.

The baseline is the chapter's algorithm written out as one plain loop (one NumPy
step per minibatch, the same early stopping), measured in the same run on the same
arrays. Prints epochs per second, peak traced memory and the ratios.

    python benchmarks/bench_train.py [--data-dir DIR] [--repeat 3]
"""

from __future__ import annotations

import argparse
import math
import time
import tracemalloc

import numpy as np

from logreg_mnist import load_mnist, preset, train


def plain_numpy_loop(data, lr=0.13, batch=600, patience=5000, increase=2, threshold=0.995, n_epochs=1000):
    x, y = data.train.images, data.train.labels
    vx, vy = data.valid.images, data.valid.labels
    tx, ty = data.test.images, data.test.labels
    W = np.zeros((784, 10), np.float32)
    b = np.zeros(10, np.float32)
    n_batches = len(y) // batch
    n_valid, n_test = (len(vy) // batch) * batch, (len(ty) // batch) * batch
    frequency = min(n_batches, patience // 2)
    best, test_score, epoch, done = math.inf, 0.0, 0, False
    while epoch < n_epochs and not done:
        epoch += 1
        for i in range(n_batches):
            xb, yb = x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch]
            z = xb @ W + b
            z -= z.max(axis=1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(axis=1, keepdims=True)
            p[np.arange(batch), yb] -= 1
            p /= batch
            W -= np.float32(lr) * (xb.T @ p)
            b -= np.float32(lr) * p.sum(axis=0)
            it = (epoch - 1) * n_batches + i
            if (it + 1) % frequency == 0:
                loss = np.mean(np.argmax(vx[:n_valid] @ W + b, axis=1) != vy[:n_valid])
                if loss < best:
                    if loss < best * threshold:
                        patience = max(patience, it * increase)
                    best = loss
                    test_score = np.mean(np.argmax(tx[:n_test] @ W + b, axis=1) != ty[:n_test])
            if patience <= it:
                done = True
                break
    return epoch, best, test_score


def measure(fn):
    tracemalloc.start()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="MNIST directory (default: as load_mnist finds it)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the fastest counts (default: 3)")
    args = parser.parse_args()
    data = load_mnist(args.data_dir)
    for split in (data.train, data.valid, data.test):
        split.images  # noqa: B018 -- converts to float32 once, outside the timings

    best = {}
    for _ in range(args.repeat):
        for name, fn in (("plain NumPy loop", lambda: plain_numpy_loop(data)),
                         ("logreg_mnist.train", lambda: train(data, preset("tutorial")))):
            result, seconds, peak = measure(fn)
            if name not in best or seconds < best[name][1]:
                best[name] = (result, seconds, peak)

    (epochs, valid, test), base_s, base_peak = best["plain NumPy loop"]
    (_, history), ours_s, ours_peak = best["logreg_mnist.train"]
    print(f"tutorial preset on {data.identity}, fastest of {args.repeat}:")
    print(f"  {'':<20} {'epochs':>6} {'valid %':>9} {'test %':>9} {'seconds':>8} {'epochs/s':>9} {'peak MiB':>9}")
    print(f"  {'plain NumPy loop':<20} {epochs:>6} {valid * 100:>9.4f} {test * 100:>9.4f} {base_s:>8.2f} "
          f"{epochs / base_s:>9.2f} {base_peak / 2**20:>9.2f}")
    print(f"  {'logreg_mnist.train':<20} {history.epochs:>6} {history.best_valid_error * 100:>9.4f} "
          f"{history.test_error * 100:>9.4f} {ours_s:>8.2f} {history.epochs / ours_s:>9.2f} "
          f"{ours_peak / 2**20:>9.2f}")
    print(f"  ratio train / plain: speed {(history.epochs / ours_s) / (epochs / base_s):.2f}x, "
          f"peak memory {ours_peak / base_peak:.2f}x")


if __name__ == "__main__":
    main()
