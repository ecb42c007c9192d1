"""A plain NumPy script of the chapter's algorithm: the peer process of bench_engines.py.

What a user would write in 40 lines: read the four gzip IDX files, scale to float32
``/ 256``, the tutorial's split, minibatch SGD with geometric-patience early
stopping, partial minibatches dropped. Prints ``epochs test_error``.

    python benchmarks/plain_numpy_peer.py DATA_DIR
"""

import gzip
import math
import sys

import numpy as np


def read(path, offset):
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def plain_numpy_loop(x, y, vx, vy, tx, ty, lr=0.13, batch=600, patience=5000, increase=2, threshold=0.995,
                     n_epochs=1000):
    """The chapter's logistic_sgd on float32 arrays; returns (epochs, best validation, test error)."""
    W = np.zeros((x.shape[1], 10), np.float32)
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


def load(directory):
    train_x = read(f"{directory}/train-images-idx3-ubyte.gz", 16).reshape(-1, 784).astype(np.float32) / 256
    train_y = read(f"{directory}/train-labels-idx1-ubyte.gz", 8).astype(np.int64)
    test_x = read(f"{directory}/t10k-images-idx3-ubyte.gz", 16).reshape(-1, 784).astype(np.float32) / 256
    test_y = read(f"{directory}/t10k-labels-idx1-ubyte.gz", 8).astype(np.int64)
    return train_x[:50000], train_y[:50000], train_x[50000:], train_y[50000:], test_x, test_y


if __name__ == "__main__":
    epochs, _, test = plain_numpy_loop(*load(sys.argv[1]))
    print(epochs, f"{test * 100:f}")
